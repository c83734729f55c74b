// Validate glTF binaries with the Khronos validator and print one JSON array of reports (one per file, in order).
//   node scripts/gltf_validate.cjs <path to node_modules/gltf-validator> FILE.glb [FILE.glb ...]
// Run through `bash scripts/gltf_validator.sh validate ...`, which finds the pinned install. Every issue is kept
// (maxIssues 0 = no limit); each report has issues.numErrors / numWarnings / numInfos / numHints and messages.
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [modulePath, ...files] = process.argv.slice(2);
  if (!modulePath || files.length === 0) {
    console.error('usage: node gltf_validate.cjs <gltf-validator module folder> FILE.glb [...]');
    process.exit(2);
  }
  const validator = require(path.resolve(modulePath));
  const reports = [];
  for (const file of files) {
    const data = new Uint8Array(fs.readFileSync(file));
    const report = await validator.validateBytes(data, {
      uri: path.basename(file),
      maxIssues: 0,
      // a .glb written by this project is self-contained: any external reference is an error in itself
      externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri} not allowed`)),
    });
    reports.push(report);
  }
  process.stdout.write(JSON.stringify(reports, null, 1) + '\n');
}

main().catch((err) => {
  console.error(`gltf validator failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
