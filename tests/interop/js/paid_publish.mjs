// A paying Nostr client built only on npm nostr-tools and noble: it signs the
// channel claim itself (EIP-191 over keccak256(channelId, claimAmount, nonce)),
// attaches the contract's payment tag, publishes over nostr-tools' Relay and
// reads the event back. It shares no code with the Python packages, so a test
// that runs it shows the claim format holds across implementations.
//
//   node --experimental-websocket paid_publish.mjs <request.json>
//
// request: {relay, channelId, claimAmount, nonce, evmKey, currency, content}
// (claimAmount and nonce decimal strings; evmKey 0x + 64 hex). Prints one JSON
// line: {signature, id, pubkey, accepted, message, fetched}; without `relay` it
// only signs: {signature}.
import { readFileSync } from 'node:fs'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, concatBytes, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js'
import { finalizeEvent, generateSecretKey } from 'nostr-tools/pure'
import { Relay } from 'nostr-tools/relay'

const uint256 = (decimal) => hexToBytes(BigInt(decimal).toString(16).padStart(64, '0'))
const unhex = (text) => hexToBytes(text.replace(/^0x/, ''))

function signClaim(evmKey, channelId, claimAmount, nonce) {
  const digest = keccak_256(concatBytes(unhex(channelId), uint256(claimAmount), uint256(nonce)))
  const prefix = utf8ToBytes('\x19Ethereum Signed Message:\n32')
  const message = keccak_256(concatBytes(prefix, digest))
  // noble's "recovered" format is recovery || r || s, with s already low.
  const signed = secp256k1.sign(message, unhex(evmKey), { prehash: false, format: 'recovered' })
  return '0x' + bytesToHex(signed.slice(1)) + (27 + signed[0]).toString(16)
}

async function main() {
  const request = JSON.parse(readFileSync(process.argv[2], 'utf8'))
  const signature = signClaim(request.evmKey, request.channelId, request.claimAmount, request.nonce)
  if (!request.relay) {
    console.log(JSON.stringify({ signature }))
    return
  }
  const tag = ['payment', 'ilp', request.channelId, request.claimAmount, request.nonce, signature,
    request.currency]
  const event = finalizeEvent(
    { kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [tag], content: request.content },
    generateSecretKey(),
  )
  const relay = await Relay.connect(request.relay)
  let accepted = true
  let message = ''
  try {
    message = await relay.publish(event)
  } catch (error) {
    accepted = false
    message = String(error.message ?? error)
  }
  const fetched = await new Promise((resolve) => {
    const found = []
    const sub = relay.subscribe([{ ids: [event.id] }], {
      onevent: (e) => found.push(e.id),
      oneose: () => { sub.close(); resolve(found) },
    })
  })
  relay.close()
  console.log(JSON.stringify({ signature, id: event.id, pubkey: event.pubkey, accepted, message, fetched }))
}

await main()
