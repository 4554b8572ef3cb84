// Compiles contracts/ with the pinned solc-js (standard JSON, fixed settings)
// and writes one artifact per contract into src/payment_channel/artifacts/.
//
//   node scripts/compile.mjs [--out DIR]
//
// The output is deterministic: the same sources and solc give the same bytes,
// which tests/test_artifacts.py checks against the committed artifacts.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SOURCES = {
  ChannelFactory: "contracts/ChannelFactory.sol",
  TestToken: "contracts/test/TestToken.sol",
  Reenterer: "contracts/test/Reenterer.sol",
};
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  // paris: no PUSH0/MCOPY, so the bytecode runs on every EVM chain we target.
  evmVersion: "paris",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

const args = process.argv.slice(2);
const outIndex = args.indexOf("--out");
const outDir = outIndex >= 0 ? resolve(args[outIndex + 1]) : join(root, "src/payment_channel/artifacts");

const sources = {};
for (const path of Object.values(SOURCES)) {
  sources[path] = { content: readFileSync(join(root, path), "utf8") };
}
const output = JSON.parse(solc.compile(JSON.stringify({ language: "Solidity", sources, settings: SETTINGS })));
const errors = (output.errors ?? []).filter((e) => e.severity === "error");
for (const e of output.errors ?? []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

const version = solc.version();
mkdirSync(outDir, { recursive: true });
for (const [name, path] of Object.entries(SOURCES)) {
  const compiled = output.contracts[path][name];
  const artifact = {
    contractName: name,
    sourceName: path,
    abi: compiled.abi,
    bytecode: "0x" + compiled.evm.bytecode.object,
    deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
    compiler: { version, settings: SETTINGS },
  };
  writeFileSync(join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
  console.log(`${name}: ${compiled.evm.deployedBytecode.object.length / 2} bytes deployed -> ${join(outDir, name + ".json")}`);
}
