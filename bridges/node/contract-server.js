#!/usr/bin/env node
// The Node twin served over the bridge contract (docs/BRIDGE_CONTRACT.md): one JSON request per line on
// stdin, one JSON response or event per line on stdout. Requests run concurrently, as Baileys sockets call.

// libsignal logs whole sessions, private keys included, through console.*: nothing of it may reach a log,
// and stdout is the protocol stream. So console is silenced before Baileys is loaded.
for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) console[level] = () => {}

const { createInterface } = await import('node:readline')
const { AuthBridge } = await import('./lib/auth-state.js')
const { BufferJSON } = await import('./lib/codec.js')
const { ManualClock } = await import('./lib/cache.js')
const { BridgeError, INVALID_INPUT, invalidInput } = await import('./lib/errors.js')

const CONTRACT_VERSION = 1
// A bug must not take the bridge down in the middle of a drill unseen: say what failed (never a value) and go on.
for (const signal of ['uncaughtException', 'unhandledRejection']) {
  process.on(signal, (err) => process.stderr.write(`contract-server: ${signal}: ${err?.stack ?? err}\n`))
}
let bridge = null
let clock = null

const send = (message) => process.stdout.write(JSON.stringify(message, BufferJSON.replacer) + '\n')
const need = () => {
  if (!bridge) throw invalidInput("the bridge is not configured: send 'configure' first", 'op')
  return bridge
}
const arg = (args, name) => {
  if (!(name in args)) throw invalidInput(`missing argument '${name}'`, name)
  return args[name]
}

const handlers = {
  configure: (args) => {
    if (bridge) throw invalidInput('the bridge is already configured', 'op')
    const { clock: clockKind, health, ...settings } = args
    if (clockKind === 'manual') clock = new ManualClock()
    const made = new AuthBridge(settings, { ...(clock ? { clock } : {}), health: health ?? {} })
    made.on('bridge-event', (e) => send({ event: e.kind, at: e.at, ...(clock ? { mono: e.mono } : {}), details: e.details }))
    bridge = made
    return { bridge: 'node', contract: CONTRACT_VERSION, op_timeout_s: made.store.opTimeoutS }
  },
  start: () => { need().start(); return null },
  probe: async () => ({ state: await need().probeOnce() }),
  'keys.get': (a) => need().getKeys(arg(a, 'company'), arg(a, 'type'), arg(a, 'ids')),
  'keys.set': (a) => need().setKeys(arg(a, 'company'), arg(a, 'data')),
  'creds.get': (a) => need().readCreds(arg(a, 'company')),
  'creds.save': async (a) => { await need().saveCreds(arg(a, 'company'), arg(a, 'creds')); return null },
  state: () => ({ state: need().state, read_only_since: need().sinceWall ? need().sinceWall.getTime() / 1000 : null }),
  health: () => need().monitor.snapshot(),
  'health.reset': () => { need().resetHealth(); return null },
  'cache.snapshot': (a) => need().cacheSnapshot({ includeExpired: Boolean(a.include_expired) }),
  'export.cache': (a) => need().exportCache(arg(a, 'dir'), { includeExpired: Boolean(a.include_expired) }),
  shutdown: async () => {
    const b = bridge
    bridge = null
    await b?.close()
    return null
  }
}

async function handle (line) {
  let request
  try {
    request = JSON.parse(line, BufferJSON.reviver)
  } catch (err) {
    send({ id: null, ok: false, error: { name: INVALID_INPUT, message: `not a JSON line: ${err.message}` } })
    return
  }
  const { id = null, op, args = {}, now } = request
  const handler = Object.hasOwn(handlers, op) ? handlers[op] : null
  if (!handler) {
    send({ id, ok: false, error: { name: 'unknown_operation', message: `no operation ${JSON.stringify(op)}` } })
    return
  }
  if (clock && typeof now === 'number') clock.set(now)
  try {
    const result = await handler(args ?? {})
    send({ id, ok: true, result: result ?? null })
  } catch (err) {
    const error = err instanceof BridgeError ? err.toWire() : { name: 'internal', message: `${err.name}: ${err.message}` }
    send({ id, ok: false, error })
  }
  if (op === 'shutdown') process.exit(0)
}

const pending = new Set()
createInterface({ input: process.stdin, crlfDelay: Infinity })
  .on('line', (line) => {
    if (!line.trim()) return
    const task = handle(line).finally(() => pending.delete(task))
    pending.add(task)
  })
  .on('close', async () => {
    await Promise.allSettled([...pending])
    await bridge?.close()
    process.exit(0)
  })
