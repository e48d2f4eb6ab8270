// Lets a child process run TypeScript (lib/ and test/children/) without a build step: every .ts
// file is transpiled on require by the project's own TypeScript (no type check; jest's ts-jest
// type-checks the same sources). Used as `node -r ./test/children/register.js child.ts`.
'use strict';
const fs = require('fs');
const ts = require('typescript');

const compilerOptions = {
  module: ts.ModuleKind.CommonJS,
  target: ts.ScriptTarget.ES2022,
  esModuleInterop: true,
  sourceMap: false,
};

require.extensions['.ts'] = (module, filename) => {
  const { outputText } = ts.transpileModule(fs.readFileSync(filename, 'utf8'), { compilerOptions, fileName: filename });
  module._compile(outputText, filename);
};
