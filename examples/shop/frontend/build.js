// Builds the static site: copies src/ into dist/ and stamps the version into the page.
'use strict';

const fs = require('fs');
const path = require('path');

const srcDir = path.join(__dirname, 'src');
const distDir = path.join(__dirname, 'dist');
const { version } = require('./package.json');

fs.rmSync(distDir, { recursive: true, force: true });
fs.mkdirSync(distDir, { recursive: true });

for (const name of fs.readdirSync(srcDir)) {
  let content = fs.readFileSync(path.join(srcDir, name), 'utf8');
  if (name.endsWith('.html')) {
    content = content.replace(/__VERSION__/g, version);
  }
  fs.writeFileSync(path.join(distDir, name), content);
  console.log(`dist/${name}`);
}
