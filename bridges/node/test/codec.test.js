import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { credsWhere, decode, encode, keyWhere } from '../lib/codec.js'
import { validateCompanyId, validateKeyIds, validateKeyType } from '../lib/ids.js'
import { connectTimeoutMs, parseDsn } from '../lib/store.js'

test('bytes round-trip as BufferJSON, the form Baileys writes', () => {
  const text = encode({ private: Buffer.from([1, 2, 3]), n: 1 }, 'creds')
  assert.equal(text, '{"private":{"type":"Buffer","data":"AQID"},"n":1}')
  assert.deepEqual(decode(text, credsWhere('acme')), { private: Buffer.from([1, 2, 3]), n: 1 })
})

test('a Buffer object that is not base64 is corruption, naming the row', () => {
  assert.throws(() => decode('{"type":"Buffer","data":"%%%"}', keyWhere('acme', 'session', '1.0')), (err) => {
    assert.equal(err.kind, 'corrupted')
    assert.equal(err.attrs.key_id, '1.0')
    return true
  })
})

test('bad input is refused as invalid_input naming what', () => {
  const kinds = []
  for (const f of [
    () => encode('text', 'pre-key 1'),
    () => encode([1], 'creds', { objectOnly: true }),
    () => encode({ s: 'a\u0000b' }, 'pre-key 2'),
    () => validateCompanyId(''),
    () => validateKeyType('no-such-type', 'acme'),
    () => validateKeyIds('1', 'pre-key', 'acme')
  ]) {
    assert.throws(f, (err) => { kinds.push(err.kind); return true })
  }
  assert.deepEqual(new Set(kinds), new Set(['invalid_input']))
})

test('a libpq DSN and a URL give the same settings; a malformed DSN is refused', () => {
  const dsn = parseDsn("host=db port=6432 dbname=auth user=app password='p w' sslmode=disable")
  assert.deepEqual(dsn, { host: 'db', port: 6432, database: 'auth', user: 'app', password: 'p w', ssl: false })
  assert.deepEqual(parseDsn('postgresql://app:p%20w@db:6432/auth?sslmode=disable'), dsn)
  assert.throws(() => parseDsn('host'), /malformed DSN/)
})

test('sslmode as libpq means it: verify-full by default, a CA file read, no mode that may fall back', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twin-tls-'))
  const ca = path.join(dir, 'ca.pem')
  fs.writeFileSync(ca, 'CA')
  try {
    assert.deepEqual(parseDsn('host=db dbname=auth').ssl, { rejectUnauthorized: true, ca: undefined })
    assert.deepEqual(parseDsn(`host=db dbname=auth sslmode=verify-full sslrootcert=${ca}`).ssl, { rejectUnauthorized: true, ca: 'CA' })
    assert.equal(typeof parseDsn(`host=db sslmode=verify-ca sslrootcert=${ca}`).ssl.checkServerIdentity, 'function')
    assert.deepEqual(parseDsn('host=db sslmode=require').ssl, { rejectUnauthorized: false })
    assert.throws(() => parseDsn('host=db sslmode=prefer'), /sslmode=prefer is not supported/)
    assert.throws(() => parseDsn(`host=db sslrootcert=${ca}.missing`), /cannot be read/)
  } finally {
    fs.rmSync(dir, { recursive: true })
  }
})

test('a connect timeout under 2 s counts as 2 s, as in libpq', () => {
  assert.equal(connectTimeoutMs(1), 2000)
  assert.equal(connectTimeoutMs(5), 5000)
})
