// Compiles server/contracts/CairnAnchor.sol with solc from the npm registry (solc-js, standard JSON) for the
// EVM version the test chain runs (ganache 7: shanghai), and writes <out>/CairnAnchor.bin (creation bytecode,
// hex) and <out>/CairnAnchor.abi.json. Run by scripts/chain-setup; usage: node compile-contract.js SRC OUT_DIR
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const [src, out] = process.argv.slice(2);
if (!src || !out) {
  console.error("usage: node compile-contract.js SRC OUT_DIR");
  process.exit(2);
}
const input = {
  language: "Solidity",
  sources: { "CairnAnchor.sol": { content: fs.readFileSync(src, "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "shanghai",
    outputSelection: { "*": { CairnAnchor: ["abi", "evm.bytecode.object"] } },
  },
};
const result = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (result.errors || []).filter((e) => e.severity === "error");
for (const e of result.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
const c = result.contracts["CairnAnchor.sol"].CairnAnchor;
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, "CairnAnchor.bin"), c.evm.bytecode.object + "\n");
fs.writeFileSync(path.join(out, "CairnAnchor.abi.json"), JSON.stringify(c.abi, null, 2) + "\n");
console.log(`solc ${solc.version()}: ${c.evm.bytecode.object.length / 2} bytes of creation code`);
