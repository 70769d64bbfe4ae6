#!/usr/bin/env node
// Write a realistic Baileys 6.7.24 auth folder with Baileys' and libsignal's own code, every key type included.
//
//   node compat/generate_folder.js FOLDER [--peers N] [--groups N] [--pre-keys N] [--app-keys N]
//
// Run it from the project root, so that node_modules holds the pinned @whiskeysockets/baileys.
// It pairs no phone: `me`, `account` and the peers are local stand-ins, but every key is made the way
// Baileys makes it (initAuthCreds, getNextPreKeys, the libsignal repository encrypting and decrypting
// real messages), and every file is written by useMultiFileAuthState's keys.set and saveCreds.
// Prints one JSON line: {"folder", "ids": [[type, id], ...], "counts": {type: n}}. No key material.
'use strict'

const fs = require('fs')
const crypto = require('crypto')

// libsignal logs whole session entries, private keys included, through console.*: never let them out.
for (const level of ['log', 'info', 'warn', 'error', 'debug']) console[level] = () => {}

function parseArgs(argv) {
  const opts = { peers: 6, groups: 3, preKeys: 40, appKeys: 3 }
  const names = { '--peers': 'peers', '--groups': 'groups', '--pre-keys': 'preKeys', '--app-keys': 'appKeys' }
  const rest = []
  for (let i = 0; i < argv.length; i++) {
    const name = names[argv[i]]
    if (!name) { rest.push(argv[i]); continue }
    const value = Number(argv[++i])
    if (!Number.isInteger(value) || value < 0) fail(`${argv[i - 1]} needs a non-negative integer, got ${argv[i]}`)
    opts[name] = value
  }
  if (rest.length !== 1) fail('usage: generate_folder.js FOLDER [--peers N] [--groups N] [--pre-keys N] [--app-keys N]')
  opts.folder = rest[0]
  return opts
}

function fail(message) {
  process.stderr.write(`generate_folder: ${message}\n`)
  process.exit(2)
}

// A keys store in memory for the peers, with the same get/set contract as useMultiFileAuthState.
function memoryKeys() {
  const data = new Map()
  return {
    get: async (type, ids) => Object.fromEntries(ids.map((id) => [id, data.get(`${type}/${id}`) ?? null])),
    set: async (changes) => {
      for (const type in changes) {
        for (const id in changes[type]) {
          const value = changes[type][id]
          if (value) data.set(`${type}/${id}`, value)
          else data.delete(`${type}/${id}`)
        }
      }
    }
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  if (fs.existsSync(opts.folder) && fs.readdirSync(opts.folder).length) fail(`${opts.folder} is not empty`)

  const baileys = await import('@whiskeysockets/baileys')
  const { makeLibSignalRepository } = await import('@whiskeysockets/baileys/lib/Signal/libsignal.js')
  const { useMultiFileAuthState, initAuthCreds, getNextPreKeys, generateSignalPubKey, createSignalIdentity,
    Curve, proto } = baileys

  const { state, saveCreds } = await useMultiFileAuthState(opts.folder)
  const creds = state.creds

  // Track exactly which ids Baileys' own calls leave in the folder (a falsy value deletes).
  const live = new Map()
  const folderSet = state.keys.set
  state.keys.set = async (changes) => {
    for (const type in changes) {
      for (const id in changes[type]) {
        if (changes[type][id]) live.set(`${type}\u0000${id}`, [type, id])
        else live.delete(`${type}\u0000${id}`)
      }
    }
    return folderSet(changes)
  }

  // What pairing would add to creds (values made by the same helpers Baileys uses while pairing).
  const meUser = '5511999990000'
  const meDevice = 12
  const meJid = `${meUser}:${meDevice}@s.whatsapp.net`
  creds.me = { id: meJid, lid: `187654321098765:${meDevice}@lid`, name: 'Oráculo ✓ test' }
  const accountSignatureKey = Curve.generateKeyPair().public
  creds.account = proto.ADVSignedDeviceIdentity.decode(proto.ADVSignedDeviceIdentity.encode({
    details: crypto.randomBytes(24),
    accountSignatureKey,
    accountSignature: crypto.randomBytes(64),
    deviceSignature: crypto.randomBytes(64)
  }).finish())
  creds.signalIdentities = [createSignalIdentity(meJid, accountSignatureKey)]
  creds.platform = 'smba'
  creds.routingInfo = crypto.randomBytes(16)
  creds.lastPropHash = '2V77qU'
  creds.lastAccountSyncTimestamp = 1735689600
  creds.processedHistoryMessages = [
    { key: { remoteJid: `${meUser}@s.whatsapp.net`, fromMe: true, id: '3EB0C431D5A8B1A4E2F1' }, messageTimestamp: 1735689601 }
  ]

  const repo = makeLibSignalRepository({ creds, keys: state.keys })

  // Pre-keys as the socket makes them on connect: getNextPreKeys writes them and advances the counters.
  if (opts.preKeys > 0) {
    const { update } = await getNextPreKeys({ creds, keys: state.keys }, opts.preKeys)
    Object.assign(creds, update)
  }

  const peers = []
  for (let p = 0; p < opts.peers; p++) {
    const peerCreds = initAuthCreds()
    const peerKeys = memoryKeys()
    const user = `55119100000${String(p).padStart(2, '0')}`
    // Mostly phone JIDs, some with a companion device (session id <user>.<device>), one LID.
    const jid = p === 4 ? `1876543210${String(p).padStart(5, '0')}@lid`
      : p % 3 === 2 ? `${user}:${p}@s.whatsapp.net` : `${user}@s.whatsapp.net`
    peers.push({ jid, creds: peerCreds, keys: peerKeys, repo: makeLibSignalRepository({ creds: peerCreds, keys: peerKeys }) })
  }

  const bundleOf = async (ownerCreds, ownerKeys) => {
    const { update, preKeys } = await getNextPreKeys({ creds: ownerCreds, keys: ownerKeys }, 1)
    const [keyId, pair] = Object.entries(preKeys).pop()
    Object.assign(ownerCreds, update)
    return {
      registrationId: ownerCreds.registrationId,
      identityKey: generateSignalPubKey(ownerCreds.signedIdentityKey.public),
      signedPreKey: {
        keyId: ownerCreds.signedPreKey.keyId,
        publicKey: generateSignalPubKey(ownerCreds.signedPreKey.keyPair.public),
        signature: ownerCreds.signedPreKey.signature
      },
      preKey: { keyId: Number(keyId), publicKey: generateSignalPubKey(pair.public) }
    }
  }

  // Sessions: half started by us (outgoing pkmsg), half by the peer using one of our pre-keys (which
  // Baileys then deletes); every session then carries a reply, and some are re-keyed (closed entries).
  for (const [index, peer] of peers.entries()) {
    const text = Buffer.from(`hello ${index}`)
    if (index % 2 === 0) {
      await repo.injectE2ESession({ jid: peer.jid, session: await bundleOf(peer.creds, peer.keys) })
      const out = await repo.encryptMessage({ jid: peer.jid, data: text })
      await peer.repo.decryptMessage({ jid: meJid, type: out.type, ciphertext: out.ciphertext })
      const back = await peer.repo.encryptMessage({ jid: meJid, data: text })
      await repo.decryptMessage({ jid: peer.jid, type: back.type, ciphertext: back.ciphertext })
    } else {
      await peer.repo.injectE2ESession({ jid: meJid, session: await bundleOf(creds, state.keys) })
      const inbound = await peer.repo.encryptMessage({ jid: meJid, data: text })
      await repo.decryptMessage({ jid: peer.jid, type: inbound.type, ciphertext: inbound.ciphertext })
      const reply = await repo.encryptMessage({ jid: peer.jid, data: text })
      await peer.repo.decryptMessage({ jid: meJid, type: reply.type, ciphertext: reply.ciphertext })
    }
    if (index % 3 === 0) {
      await repo.injectE2ESession({ jid: peer.jid, session: await bundleOf(peer.creds, peer.keys) })
    }
  }

  // Groups: a new-style id, an old-style <creator>-<timestamp> id with '-', and status broadcasts.
  const groupIds = ['120363025000000000@g.us', '5511999990001-1610000001@g.us', 'status@broadcast']
  for (let g = 3; g < opts.groups; g++) groupIds.push(`1203630250000000${String(g).padStart(2, '0')}@g.us`)
  for (const group of groupIds.slice(0, Math.max(opts.groups, 0))) {
    const members = {}
    await repo.encryptGroupMessage({ group, meId: meJid, data: Buffer.from('to the group') })
    for (const peer of peers) {
      // Three messages, only the last decrypted, so the record keeps skipped message keys.
      let last
      for (let n = 0; n < 3; n++) last = await peer.repo.encryptGroupMessage({ group, meId: peer.jid, data: Buffer.from(`m${n}`) })
      await repo.processSenderKeyDistributionMessage({
        item: { groupId: group, axolotlSenderKeyDistributionMessage: last.senderKeyDistributionMessage },
        authorJid: peer.jid
      })
      await repo.decryptGroupMessage({ group, authorJid: peer.jid, msg: last.ciphertext })
      members[peer.jid] = true
    }
    await state.keys.set({ 'sender-key-memory': { [group]: members } })
  }

  // App-state sync keys as process-message stores a key share: the decoded proto message itself.
  const keyIds = [Buffer.from([0, 0, 0, 0, 0x0f, 0xff]), Buffer.from([0xfb, 0xef, 0xbe, 0, 0, 1])]
  while (keyIds.length < opts.appKeys) keyIds.push(crypto.randomBytes(6))
  let newest
  for (const [n, keyId] of keyIds.slice(0, opts.appKeys).entries()) {
    const share = proto.Message.AppStateSyncKey.decode(proto.Message.AppStateSyncKey.encode({
      keyId: { keyId },
      keyData: { keyData: crypto.randomBytes(32), fingerprint: { rawId: 1000 + n, currentIndex: n, deviceIndexes: [0, meDevice] }, timestamp: 1735689600000 + n }
    }).finish())
    newest = Buffer.from(share.keyId.keyId).toString('base64')
    await state.keys.set({ 'app-state-sync-key': { [newest]: share.keyData } })
  }
  if (newest) creds.myAppStateKeyId = newest

  // App-state versions: LTHash states as chat-utils keeps them.
  for (const [n, name] of ['critical_block', 'critical_unblock_low', 'regular_high', 'regular_low', 'regular'].entries()) {
    const indexValueMap = {}
    for (let i = 0; i < 4 + n; i++) indexValueMap[crypto.randomBytes(32).toString('base64')] = { valueMac: crypto.randomBytes(32) }
    await state.keys.set({ 'app-state-sync-version': { [name]: { version: 5 + n, hash: crypto.randomBytes(128), indexValueMap } } })
  }

  await saveCreds()

  const ids = [...live.values()].sort()
  const counts = {}
  for (const [type] of ids) counts[type] = (counts[type] || 0) + 1
  process.stdout.write(JSON.stringify({ folder: opts.folder, ids, counts }) + '\n')
}

main().catch((error) => {
  process.stderr.write(`generate_folder: ${error && error.stack ? error.stack : error}\n`)
  process.exit(1)
})
