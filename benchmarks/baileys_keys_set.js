#!/usr/bin/env node
// Baileys' own writer as a baseline: useMultiFileAuthState's keys.set and saveCreds, from the pinned package.
//
//   node benchmarks/baileys_keys_set.js PLAN.json
//
// PLAN.json: {"root": DIR, "sync": true|false, "companies": [{"id": "company-00", "input": FILE}, ...]}.
// Each INPUT file holds one company in the stored (BufferJSON) form: {"creds": {...}, "keys": {type: {id: value}}}.
// For every company, in order: read and revive its input (not timed), open DIR/<id> with useMultiFileAuthState
// (not timed), then time one keys.set() with all its keys and one saveCreds(), exactly as Baileys writes them:
// every file in parallel, JSON.stringify with BufferJSON.replacer, no fsync. With "sync", one `sync -f DIR`
// (syncfs) follows, timed apart. Prints one JSON line: {"keys", "files", "set_s", "creds_s", "sync_s"}.
'use strict'

const fs = require('fs')
const path = require('path')
const { execFileSync } = require('child_process')

function fail(message) {
  process.stderr.write(`baileys_keys_set: ${message}\n`)
  process.exit(2)
}

const seconds = (start) => Number(process.hrtime.bigint() - start) / 1e9

async function main() {
  if (process.argv.length !== 3) fail('usage: baileys_keys_set.js PLAN.json')
  const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'))
  if (fs.existsSync(plan.root)) fail(`${plan.root} exists; every run writes into a fresh directory`)
  fs.mkdirSync(plan.root, { recursive: true, mode: 0o700 })

  const { useMultiFileAuthState, BufferJSON } = await import('@whiskeysockets/baileys')
  const texts = new Map() // copies share their source's input file: read it once
  let keys = 0
  let setS = 0
  let credsS = 0
  for (const company of plan.companies) {
    if (!texts.has(company.input)) texts.set(company.input, fs.readFileSync(company.input, 'utf-8'))
    const input = JSON.parse(texts.get(company.input), BufferJSON.reviver)
    const { state, saveCreds } = await useMultiFileAuthState(path.join(plan.root, company.id))
    Object.assign(state.creds, input.creds)
    for (const type in input.keys) keys += Object.keys(input.keys[type]).length

    let start = process.hrtime.bigint()
    await state.keys.set(input.keys)
    setS += seconds(start)
    start = process.hrtime.bigint()
    await saveCreds()
    credsS += seconds(start)
  }
  let syncS = null
  if (plan.sync) {
    const start = process.hrtime.bigint()
    execFileSync('sync', ['-f', plan.root])
    syncS = seconds(start)
  }
  process.stdout.write(JSON.stringify({ keys, files: keys + plan.companies.length, set_s: setS, creds_s: credsS, sync_s: syncS }) + '\n')
}

main().catch((err) => fail(err && err.stack ? err.stack : String(err)))
