#!/usr/bin/env node
// Load a Baileys auth folder exactly as a Baileys 6.7.24 process would, validate every value with Baileys' and
// libsignal's own code, and either dump what Baileys sees or compare it with what a database holds.
//
//   node compat/verify_folder.js FOLDER [--ids IDS.json]            dump: canonical JSON of Baileys' view
//   node compat/verify_folder.js FOLDER --summary                   validate only: counts and problems
//   node compat/verify_folder.js FOLDER --expected EXPECTED.json    compare: prints a report, no key material
//
// IDS.json is [[type, id], ...]. EXPECTED.json is {"creds": <stored form>, "keys": [[type, id, <stored form>]]},
// the stored form being BufferJSON ({"type":"Buffer","data":"<b64>"}) as the bridge keeps it in jsonb; the
// expected side goes through the same BufferJSON.reviver (and, for app-state-sync-key, the same
// AppStateSyncKeyData.fromObject) that keys.get applies, so both sides are compared as Baileys holds them.
// Without --ids or --expected, the ids come from the file names, un-escaped by the per-type rules.
// Canonical JSON: object keys sorted, bytes as {"$bytes": "<b64>"}, int64 as {"$long": "<decimal>"}.
// Exit status: 0 when there is no problem, 1 when there are problems, 2 on bad usage.
'use strict'

const crypto = require('crypto')
const fs = require('fs')
const path = require('path')

const X25519_PKCS8_PREFIX = Buffer.from([48, 46, 2, 1, 0, 48, 5, 6, 3, 43, 101, 110, 4, 34, 4, 32])

// libsignal logs whole session entries, private keys included, through console.*: never let them out.
for (const level of ['log', 'info', 'warn', 'error', 'debug']) console[level] = () => {}

const KEY_TYPES = ['pre-key', 'session', 'sender-key', 'sender-key-memory', 'app-state-sync-key', 'app-state-sync-version']
const TYPES_LONGEST_FIRST = [...KEY_TYPES].sort((a, b) => b.length - a.length)
const fixFileName = (file) => file.replace(/\//g, '__').replace(/:/g, '-')

function fail(message) {
  process.stderr.write(`verify_folder: ${message}\n`)
  process.exit(2)
}

function parseArgs(argv) {
  const opts = {}
  const rest = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--ids' || argv[i] === '--expected') opts[argv[i].slice(2)] = argv[++i]
    else if (argv[i] === '--summary') opts.summary = true
    else rest.push(argv[i])
  }
  if (rest.length !== 1 || (opts.ids && opts.expected)) fail('usage: verify_folder.js FOLDER [--ids IDS.json] [--summary] | FOLDER --expected EXPECTED.json')
  opts.folder = rest[0]
  return opts
}

// The inverse of fixFileName for the ids Baileys 6.7.x produces (the Python side is bridge/fsformat.py).
function idsFromListing(names) {
  const ids = []
  for (const name of names) {
    if (name === 'creds.json' || !name.endsWith('.json')) continue
    const stem = name.slice(0, -'.json'.length)
    const type = TYPES_LONGEST_FIRST.find((t) => stem.startsWith(`${t}-`) && stem.length > t.length + 1)
    if (!type) continue
    let id = stem.slice(type.length + 1)
    if (type === 'sender-key') {
      const parts = id.split('--')
      if (parts.length < 3) continue
      id = `${parts.slice(0, -2).join('--')}::${parts[parts.length - 2]}::${parts[parts.length - 1]}`
    } else if (type === 'app-state-sync-key') {
      id = id.replace(/__/g, '/')
    }
    ids.push([type, id])
  }
  return ids
}

function canon(value) {
  if (value === null || value === undefined) return null
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('base64') }
  if (typeof value === 'object' && typeof value.low === 'number' && typeof value.high === 'number' && 'unsigned' in value) {
    return { $long: value.toString() }
  }
  if (Array.isArray(value)) return value.map(canon)
  if (typeof value === 'object') {
    const out = {}
    for (const key of Object.keys(value).sort()) {
      if (value[key] !== undefined) out[key] = canon(value[key])
    }
    return out
  }
  return value
}

// Where two canonical values first differ, as a JSON path; never the values themselves (they are secrets).
function firstDifference(a, b, where = '$') {
  if (JSON.stringify(a) === JSON.stringify(b)) return null
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
    for (const key of keys) {
      if (!(key in a)) return `${where}.${key} only in the database`
      if (!(key in b)) return `${where}.${key} only in the folder`
      const inner = firstDifference(a[key], b[key], `${where}.${key}`)
      if (inner) return inner
    }
  }
  return `${where} differs`
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  if (!fs.existsSync(opts.folder) || !fs.statSync(opts.folder).isDirectory()) fail(`${opts.folder} is not a directory`)
  const baileys = await import('@whiskeysockets/baileys')
  const { SenderKeyRecord } = await import('@whiskeysockets/baileys/lib/Signal/Group/sender-key-record.js')
  const libsignal = require(require.resolve('libsignal', { paths: [path.dirname(require.resolve('@whiskeysockets/baileys/package.json'))] }))
  const { useMultiFileAuthState, BufferJSON, Curve, generateSignalPubKey, proto } = baileys

  const problems = []
  const problem = (where, what) => problems.push(`${where}: ${what}`)
  const isBytes = (v, n) => Buffer.isBuffer(v) && (n === undefined || v.length === n)
  // The X25519 public key of a private key, by Node's native crypto: the same primitive libsignal's
  // generateKeyPair uses, and about 50 times faster than its pure-JS getPublicFromPrivateKey.
  const pairMatches = (priv, pub) => {
    const key = crypto.createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, Buffer.from(priv)]), format: 'der', type: 'pkcs8' })
    const derived = crypto.createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(-32)
    const given = Buffer.from(pub)
    return given.length === 33 ? given[0] === 5 && derived.equals(given.subarray(1)) : derived.equals(given)
  }
  const checkKeyPair = (where, pair) => {
    if (!pair || !isBytes(pair.private, 32) || !isBytes(pair.public, 32)) return problem(where, 'not a KeyPair of two 32-byte Buffers')
    if (!pairMatches(pair.private, pair.public)) problem(where, 'public key does not match the private key')
  }

  const validators = {
    'pre-key': (where, v) => checkKeyPair(where, v),
    session: (where, v) => {
      const record = libsignal.SessionRecord.deserialize(v)
      const sessions = record.getSessions()
      if (!sessions.length) problem(where, 'SessionRecord holds no session')
      for (const s of sessions) {
        if (!isBytes(s.indexInfo.baseKey, 33) || !isBytes(s.indexInfo.remoteIdentityKey, 33)) problem(where, 'session indexInfo keys are not 33 bytes')
        const eph = s.currentRatchet.ephemeralKeyPair
        if (!isBytes(eph.privKey, 32) || !pairMatches(eph.privKey, eph.pubKey)) problem(where, 'ratchet key pair does not match')
        if (!isBytes(s.currentRatchet.rootKey, 32)) problem(where, 'root key is not 32 bytes')
      }
    },
    'sender-key': (where, v) => {
      const record = SenderKeyRecord.deserialize(v)
      if (record.isEmpty()) problem(where, 'SenderKeyRecord holds no state')
      for (const state of record.senderKeyStates) {
        if (!isBytes(Buffer.from(state.getSenderChainKey().getSeed()), 32)) problem(where, 'chain key seed is not 32 bytes')
        const pub = state.getSigningKeyPublic()
        if (!isBytes(pub, 33)) problem(where, 'signing public key is not 33 bytes')
        const priv = state.getSigningKeyPrivate()
        if (priv && !pairMatches(priv, pub)) problem(where, 'signing public key does not match its private key')
      }
    },
    'sender-key-memory': (where, v) => {
      if (typeof v !== 'object' || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'boolean')) problem(where, 'not a map of device JID to boolean')
    },
    'app-state-sync-key': (where, v) => {
      if (!isBytes(Buffer.from(v.keyData || []), 32)) problem(where, 'keyData is not 32 bytes')
      if (!v.fingerprint || v.timestamp === undefined || v.timestamp === null) problem(where, 'fingerprint or timestamp missing')
    },
    'app-state-sync-version': (where, v) => {
      if (typeof v.version !== 'number' || !isBytes(v.hash, 128)) problem(where, 'version or 128-byte hash missing')
      for (const [mac, entry] of Object.entries(v.indexValueMap || {})) {
        if (!entry || !isBytes(entry.valueMac, 32)) problem(where, `indexValueMap[${mac.slice(0, 8)}...] valueMac is not 32 bytes`)
      }
    }
  }

  const checkCreds = (creds) => {
    for (const field of ['noiseKey', 'pairingEphemeralKeyPair', 'signedIdentityKey']) checkKeyPair(`creds.${field}`, creds[field])
    const spk = creds.signedPreKey
    if (!spk) return problem('creds.signedPreKey', 'missing')
    checkKeyPair('creds.signedPreKey.keyPair', spk.keyPair)
    if (!isBytes(spk.signature, 64) || !creds.signedIdentityKey ||
        !Curve.verify(creds.signedIdentityKey.public, generateSignalPubKey(spk.keyPair.public), spk.signature)) {
      problem('creds.signedPreKey.signature', 'does not verify with signedIdentityKey')
    }
    if (!Number.isInteger(creds.registrationId) || creds.registrationId < 0 || creds.registrationId > 16383) problem('creds.registrationId', 'not in 0..16383')
    if (typeof creds.advSecretKey !== 'string') problem('creds.advSecretKey', 'not a base64 string')
    for (const field of ['processedHistoryMessages', 'nextPreKeyId', 'firstUnuploadedPreKeyId', 'accountSyncCounter', 'accountSettings', 'registered']) {
      if (creds[field] === undefined || creds[field] === null) problem(`creds.${field}`, 'missing')
    }
  }

  // creds.json: Baileys silently starts a new login when it cannot read it, so read it ourselves first.
  const credsPath = path.join(opts.folder, 'creds.json')
  try {
    JSON.parse(fs.readFileSync(credsPath, 'utf-8'), BufferJSON.reviver)
  } catch (error) {
    problem('creds.json', `missing or unreadable (${error.code || error.name}); Baileys would start a new login`)
  }
  const { state } = await useMultiFileAuthState(opts.folder)
  checkCreds(state.creds)

  const expected = opts.expected ? JSON.parse(fs.readFileSync(opts.expected, 'utf-8')) : null
  const listing = fs.readdirSync(opts.folder)
  let ids
  if (expected) ids = expected.keys.map(([type, id]) => [type, id])
  else if (opts.ids) ids = JSON.parse(fs.readFileSync(opts.ids, 'utf-8'))
  else ids = idsFromListing(listing)

  const byType = {}
  for (const [type, id] of ids) (byType[type] = byType[type] || []).push(id)
  const seen = new Map()
  const counts = {}
  for (const [type, list] of Object.entries(byType)) {
    if (!KEY_TYPES.includes(type)) { problem(type, 'not a Baileys 6.7.x key type'); continue }
    const got = await state.keys.get(type, list)
    for (const id of list) {
      const where = `${type} ${id}`
      const value = got[id]
      if (value === null || value === undefined) { problem(where, `file ${fixFileName(`${type}-${id}.json`)} is missing or unreadable`); continue }
      try {
        validators[type](where, value)
      } catch (error) {
        problem(where, `rejected by Baileys/libsignal: ${error.message}`)
      }
      counts[type] = (counts[type] || 0) + 1
      seen.set(`${type}\u0000${id}`, value)
    }
  }

  if (!expected && opts.summary) {
    process.stdout.write(JSON.stringify({ ok: problems.length === 0, counts, problems }) + '\n')
    process.exitCode = problems.length ? 1 : 0
    return
  }
  if (!expected) {
    const keys = [...seen.entries()].map(([k, v]) => [...k.split('\u0000'), canon(v)])
    keys.sort((a, b) => (a[0] + '\u0000' + a[1] < b[0] + '\u0000' + b[1] ? -1 : 1))
    process.stdout.write(JSON.stringify({ creds: canon(state.creds), keys, counts, problems }) + '\n')
    process.exitCode = problems.length ? 1 : 0
    return
  }

  // Compare mode: the expected side is revived by Baileys' own reviver, as keys.get would revive the file.
  const revive = (stored) => JSON.parse(JSON.stringify(stored), BufferJSON.reviver)
  const mismatch = firstDifference(canon(revive(expected.creds)), canon(state.creds), 'creds')
  if (mismatch) problem('creds.json', mismatch)
  const wanted = new Set()
  for (const [type, id, stored] of expected.keys) {
    wanted.add(fixFileName(`${type}-${id}.json`))
    const actual = seen.get(`${type}\u0000${id}`)
    if (actual === undefined) continue
    let want = revive(stored)
    if (type === 'app-state-sync-key') want = proto.Message.AppStateSyncKeyData.fromObject(want)
    const diff = firstDifference(canon(want), canon(actual), '$')
    if (diff) problem(`${type} ${id}`, diff)
  }
  for (const name of listing) {
    if (name !== 'creds.json' && name.endsWith('.json') && !wanted.has(name)) problem(name, 'key file not in the database')
  }
  process.stdout.write(JSON.stringify({ ok: problems.length === 0, counts, problems }) + '\n')
  process.exitCode = problems.length ? 1 : 0
}

main().catch((error) => {
  process.stderr.write(`verify_folder: ${error && error.stack ? error.stack : error}\n`)
  process.exit(2)
})
