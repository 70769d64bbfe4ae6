// The auth state as Baileys sees it (keys.get / keys.set / creds), surviving database outages.
//
// While the database answers, reads and writes go through to it, and the cache is updated after each
// success (after the commit, for writes). When it stops answering, the bridge turns read-only: reads are
// served from the cache while the entry is younger than the TTL, older entries raise cache_expired (never
// stale data), and every write raises read_only (never queued). A probe moves the state healthy ->
// degraded -> unavailable and back to healthy by itself, refreshing the cache from the database (the
// database wins). Every transition is an event.
import { EventEmitter } from 'node:events'
import { chmod, mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { initAuthCreds, proto, useMultiFileAuthState } from '@whiskeysockets/baileys'
import { TTLCache, SystemClock, credsKey, keyKey, parseKey } from './cache.js'
import { credsWhere, decode, encode, keyWhere } from './codec.js'
import { BridgeError, CACHE_EXPIRED, CACHE_MISS, CORRUPTED, DATABASE_UNAVAILABLE, OUTCOME_UNKNOWN, READ_ONLY, invalidInput } from './errors.js'
import { HealthMonitor, checkThresholds } from './health.js'
import { quote, validateCompanyId, validateKeyIds, validateKeyType } from './ids.js'
import { PgStore, Probe } from './store.js'

export const HEALTHY = 'healthy'
export const DEGRADED = 'degraded'
export const UNAVAILABLE = 'unavailable'
const REFRESH_BATCH = 500
const DATA_CORRUPTED = ['XX001', 'XX002'] // pages PostgreSQL cannot read: dropped from the cache like bad rows

export const DEFAULTS = {
  pool_max: 21,
  cache_ttl_s: 300,
  probe_interval_s: 5,
  probe_timeout_s: 2,
  statement_timeout_s: 5,
  connect_timeout_s: 5,
  failures_to_degrade: 1
}

export function checkConfig (settings) {
  const config = { ...DEFAULTS, ...settings }
  for (const [name, value] of Object.entries(config)) {
    if (name === 'dsn') continue
    if (!(name in DEFAULTS)) throw invalidInput(`unknown bridge setting ${name}`, 'config')
    if (typeof value !== 'number' || !(value > 0)) throw invalidInput(`bridge setting ${name} must be a positive number, got ${quote(value)}`, name)
  }
  for (const name of ['pool_max', 'failures_to_degrade']) {
    if (!Number.isInteger(config[name])) throw invalidInput(`bridge setting ${name} must be a whole number, got ${quote(config[name])}`, name)
  }
  return config
}

const describeKey = (key) => {
  const k = parseKey(key)
  return k[0] === 'creds' ? `creds of company ${quote(k[1])}` : `${k[2]} ${quote(k[3])} of company ${quote(k[1])}`
}

export class AuthBridge extends EventEmitter {
  constructor (settings, { clock = new SystemClock(), health = {} } = {}) {
    super()
    this.config = checkConfig(settings)
    this.thresholds = checkThresholds(health)
    this.clock = clock
    this.store = new PgStore(this.config)
    this.resetHealth()
    this.probe = new Probe(this.config)
    this.cache = new TTLCache(this.config.cache_ttl_s, clock)
    this.state = HEALTHY
    this.since = null // clock time the outage was detected
    this.sinceWall = null
    this.reason = null
    this.failures = 0
    this.epoch = 0 // recoveries so far: a failure of a call begun in an earlier epoch is old news
    this.writeChains = new Map() // company -> promise: one company's writes in commit order
    this.probing = null
    this.refreshing = Promise.resolve() // the probe loop's refreshes, one after another
    this.timers = []
    this.stopped = false
  }

  emitEvent (kind, details = {}) {
    const event = { kind, at: Date.now() / 1000, mono: this.clock.monotonic(), details }
    this.emit('bridge-event', event)
    return event
  }

  // A new health window (the contract's health.reset): no samples, no active alert. Alert transitions
  // are bridge events, as state transitions are.
  resetHealth () {
    const onAlert = (change, alert) => this.emitEvent(`alert_${change}`, alert)
    this.monitor = new HealthMonitor(this.clock, { thresholds: this.thresholds, onAlert })
    this.store.monitor = this.monitor
  }

  // -- lifecycle ------------------------------------------------------------------------------------

  start () {
    this.emitEvent('started', { target: this.store.target })
    const loop = async () => {
      if (this.stopped) return
      // The loop hands the refresh after a recovery to the background: the next outage must not wait for it.
      await this.probeOnce({ background: true }).catch(() => {})
      if (!this.stopped) this.timers[0] = setTimeout(loop, this.config.probe_interval_s * 1000)
    }
    const watch = () => {
      if (this.stopped) return
      this.checkSurvivalWindow()
      this.timers[1] = setTimeout(watch, this.untilExpiry() * 1000)
    }
    loop()
    this.timers[1] = setTimeout(watch, this.untilExpiry() * 1000)
    return this
  }

  async close () {
    const started = this.timers.length > 0
    this.stopped = true
    this.timers.forEach(clearTimeout)
    await this.probing?.catch(() => {})
    await this.refreshing
    if (started) this.emitEvent('stopped')
    await this.probe.close()
    await this.store.close()
  }

  // Seconds until the oldest cached creds pass the TTL while degraded; one probe interval otherwise.
  untilExpiry () {
    if (this.state !== DEGRADED) return this.config.probe_interval_s
    const ages = [...this.cache.valid()].filter(([k]) => parseKey(k)[0] === 'creds').map(([, e]) => this.cache.age(e))
    const left = this.cache.ttlS - (ages.length ? Math.max(...ages) : this.clock.monotonic() - this.since)
    return left > 0 ? Math.min(this.config.probe_interval_s, left + 0.001) : this.config.probe_interval_s
  }

  // -- state ------------------------------------------------------------------------------------------

  // Probe once and apply the result: degrade, escalate or recover; one probe (and one recovery) at a time.
  // After a recovery the cache is refreshed before the promise resolves, unless background is set.
  probeOnce ({ background = false } = {}) {
    if (!this.probing) {
      this.probing = this.runProbe(background).finally(() => { this.probing = null })
    }
    return this.probing
  }

  async runProbe (background) {
    try {
      const seconds = await this.probe.check()
      this.monitor.observeQuery('probe', seconds)
    } catch (err) {
      this.lastProbeError = err.message
      this.onFailure(err)
      this.checkSurvivalWindow()
      return this.state
    }
    this.lastProbeError = null
    this.failures = 0
    if (this.state !== HEALTHY) {
      const epoch = this.recover()
      if (background) {
        this.refreshing = this.refreshing.then(() => this.refresh(epoch))
      } else {
        await this.refresh(epoch)
      }
    }
    return this.state
  }

  onFailure (err, epoch = null) {
    if (epoch !== null && epoch !== this.epoch) return // a casualty of an outage already recovered from
    this.failures += 1
    if (this.state === HEALTHY && this.failures >= this.config.failures_to_degrade) {
      this.reason = err.message
      this.state = DEGRADED
      this.since = this.clock.monotonic()
      this.sinceWall = new Date()
      this.emitEvent('degraded', { reason: err.message, ttl_s: this.cache.ttlS })
      this.monitor.observeOutage(true)
    }
  }

  // degraded -> unavailable once any cached creds are older than the TTL (or, with none cached, the outage is).
  checkSurvivalWindow () {
    if (this.state !== DEGRADED) return
    const creds = [...this.cache.valid()].filter(([k]) => parseKey(k)[0] === 'creds')
    const expired = creds.filter(([, e]) => this.cache.isExpired(e)).map(([k]) => parseKey(k)[1]).sort()
    const outageS = this.clock.monotonic() - this.since
    if (expired.length || (!creds.length && outageS > this.cache.ttlS)) {
      const oldest = creds.length ? Math.max(...creds.map(([, e]) => this.cache.age(e))) : outageS
      this.state = UNAVAILABLE
      this.emitEvent('unavailable', { companies: expired, oldest_age_s: oldest, ttl_s: this.cache.ttlS, outage_s: outageS, reason: this.reason })
    }
  }

  // Back to healthy as soon as the database answers; return the new epoch. The refresh follows.
  recover () {
    const outageS = this.since !== null ? this.clock.monotonic() - this.since : 0
    const previous = this.state
    this.state = HEALTHY
    const epoch = ++this.epoch
    this.since = this.sinceWall = this.reason = null
    this.emitEvent('recovered', { outage_s: outageS, from_state: previous })
    this.monitor.observeOutage(false)
    return epoch
  }

  // Refresh the cache from the database after the recovery of epoch (the database wins); never rejects.
  async refresh (epoch) {
    if (this.stopped) return
    try {
      this.emitEvent('cache_refreshed', await this.refreshCache())
    } catch (err) {
      if (err.kind === DATABASE_UNAVAILABLE || err.kind === OUTCOME_UNKNOWN) this.onFailure(err, epoch)
    }
  }

  async refreshCache () {
    const companies = new Set()
    const groups = new Map()
    const cached = new Map(this.cache.valid())
    for (const key of cached.keys()) {
      const k = parseKey(key)
      if (k[0] === 'creds') companies.add(k[1])
      else {
        const group = JSON.stringify([k[1], k[2]])
        if (!groups.has(group)) groups.set(group, [])
        groups.get(group).push(k[3])
      }
    }
    const fresh = []
    const dropped = []
    const unchanged = (key, stored) => cached.get(key)?.value === stored
    for (const company of [...companies].sort()) {
      const key = credsKey(company)
      const ticket = this.cache.ticket()
      try {
        const stored = await this.store.getStoredCreds(company)
        if (stored !== null && !unchanged(key, stored)) decode(stored, credsWhere(company))
        fresh.push([key, stored, ticket])
      } catch (err) {
        if (err.kind === CORRUPTED || DATA_CORRUPTED.includes(err.attrs?.sqlstate)) dropped.push(key)
        else throw err
      }
    }
    for (const [group, ids] of groups) {
      const [company, type] = JSON.parse(group)
      for (let i = 0; i < ids.length; i += REFRESH_BATCH) {
        const chunk = ids.slice(i, i + REFRESH_BATCH)
        const ticket = this.cache.ticket()
        let found
        try {
          found = await this.store.getStoredKeys(company, type, chunk)
        } catch (err) {
          if (!DATA_CORRUPTED.includes(err.attrs?.sqlstate)) throw err
          dropped.push(...chunk.map((id) => keyKey(company, type, id)))
          continue
        }
        for (const [id, stored] of Object.entries(found)) {
          const key = keyKey(company, type, id)
          try {
            if (stored !== null && !unchanged(key, stored)) decode(stored, keyWhere(company, type, id))
            fresh.push([key, stored, ticket])
          } catch (err) {
            dropped.push(key)
          }
        }
      }
    }
    for (const [key, stored, ticket] of fresh) this.cache.put(key, stored, ticket)
    for (const key of dropped) this.cache.invalidate(key)
    return {
      refreshed_companies: companies.size,
      refreshed_keys: fresh.filter(([key]) => parseKey(key)[0] === 'key').length,
      corrupted_dropped: dropped.length
    }
  }

  // -- cache policy -----------------------------------------------------------------------------------

  serveFromCache (key, where) {
    const entry = this.cache.get(key)
    const ttl = this.cache.ttlS
    if (!entry) {
      throw new BridgeError(CACHE_MISS, `database unavailable and ${describeKey(key)} is not cached; escalate to emergency rollback`, { key: describeKey(key), age_s: null, ttl_s: ttl })
    }
    if (this.cache.isExpired(entry)) {
      const age = this.cache.age(entry)
      if (parseKey(key)[0] === 'creds') this.checkSurvivalWindow()
      throw new BridgeError(CACHE_EXPIRED, `database unavailable and the cached ${describeKey(key)} is ${age.toFixed(1)}s old, above the ${ttl}s TTL; not served stale - escalate to the emergency rollback`, { key: describeKey(key), age_s: age, ttl_s: ttl })
    }
    return entry.value === null ? null : decode(entry.value, where)
  }

  refuseWrite (what) {
    const age = this.since !== null ? this.clock.monotonic() - this.since : 0
    const when = this.sinceWall ? `since ${this.sinceWall.toISOString().slice(0, 19)} (${age.toFixed(1)}s)` : 'now'
    const reason = this.reason || 'database unavailable'
    return new BridgeError(READ_ONLY, `${what} refused: the bridge is read-only ${when} because ${reason}; the write was not applied and will not be retried`, { since: this.sinceWall?.toISOString() ?? null, reason })
  }

  // -- Baileys operations -----------------------------------------------------------------------------

  // Read from the database while healthy, ticketed before the read; undefined means: answer from the cache.
  async readThrough (fetch) {
    if (this.state !== HEALTHY) return undefined
    const epoch = this.epoch
    const ticket = this.cache.ticket()
    try {
      const value = await fetch()
      this.failures = 0
      return { value, ticket }
    } catch (err) {
      if (err.kind !== DATABASE_UNAVAILABLE) throw err
      this.onFailure(err, epoch)
      if (this.state === HEALTHY && epoch === this.epoch) throw err
      return undefined // read-only now, or a casualty of an outage recovered from: the cache answers
    }
  }

  async readCreds (company) {
    company = validateCompanyId(company)
    const key = credsKey(company)
    const fetched = await this.readThrough(() => this.store.getStoredCreds(company))
    if (fetched === undefined) return this.serveFromCache(key, credsWhere(company))
    const creds = fetched.value === null ? null : decode(fetched.value, credsWhere(company)) // corrupted raises first
    this.cache.put(key, fetched.value, fetched.ticket)
    return creds
  }

  async getKeys (company, type, ids) {
    company = validateCompanyId(company)
    type = validateKeyType(type, company)
    ids = validateKeyIds(ids, type, company)
    const fetched = await this.readThrough(() => this.store.getStoredKeys(company, type, ids))
    if (fetched === undefined) {
      return Object.fromEntries(ids.map((id) => [id, this.serveFromCache(keyKey(company, type, id), keyWhere(company, type, id))]))
    }
    const found = {}
    for (const [id, stored] of Object.entries(fetched.value)) found[id] = stored === null ? null : decode(stored, keyWhere(company, type, id))
    for (const [id, stored] of Object.entries(fetched.value)) this.cache.put(keyKey(company, type, id), stored, fetched.ticket)
    return found
  }

  async setKeys (company, data) {
    company = validateCompanyId(company)
    if (data === null || typeof data !== 'object' || Array.isArray(data)) throw invalidInput('set data must be {type: {id: value}}', 'data')
    const rows = []
    const deletes = []
    const values = new Map()
    for (const [type, entries] of Object.entries(data)) {
      validateKeyType(type, company)
      if (entries === null || typeof entries !== 'object' || Array.isArray(entries)) {
        throw invalidInput(`set data for type ${type} of company ${quote(company)} must be {id: value}`, 'data', type)
      }
      for (const [id] of Object.entries(entries)) validateKeyIds([id], type, company)
      for (const [id, value] of Object.entries(entries)) {
        if (value === null || value === undefined) {
          deletes.push([type, id])
          values.set(keyKey(company, type, id), null)
        } else {
          const text = encode(value, `${type} ${quote(id)} of company ${quote(company)}`)
          rows.push({ t: type, i: id, v: text })
          values.set(keyKey(company, type, id), text)
        }
      }
    }
    const what = `set of ${values.size} keys of company ${quote(company)}`
    return this.write(company, what, values, () => this.store.writeSet(company, rows, deletes))
  }

  async saveCreds (company, creds) {
    company = validateCompanyId(company)
    const text = encode(creds, `creds of company ${quote(company)}`, { objectOnly: true })
    const what = `save of creds of company ${quote(company)}`
    await this.write(company, what, new Map([[credsKey(company), text]]), () => this.store.writeCreds(company, text))
  }

  // One write through to the database, then cache what it committed; refused while read-only.
  async write (company, what, values, apply) {
    if (this.state !== HEALTHY) throw this.refuseWrite(what)
    const epoch = this.epoch
    const previous = this.writeChains.get(company) ?? Promise.resolve()
    let done
    const mine = new Promise((resolve) => { done = resolve })
    this.writeChains.set(company, mine)
    await previous
    try {
      const result = await apply()
      const ticket = this.cache.ticket() // after the commit: later than any read that saw the old value
      for (const [key, value] of values) this.cache.put(key, value, ticket)
      this.failures = 0
      return result
    } catch (err) {
      if (err.kind === OUTCOME_UNKNOWN) {
        for (const key of values.keys()) this.cache.invalidate(key) // it may have committed: serve neither value
        this.onFailure(err, epoch)
        throw err
      }
      if (err.kind !== DATABASE_UNAVAILABLE) throw err
      this.onFailure(err, epoch)
      if (this.state === HEALTHY) throw err
      throw this.refuseWrite(what)
    } finally {
      done()
      if (this.writeChains.get(company) === mine) this.writeChains.delete(company)
    }
  }

  // -- cache-only export ------------------------------------------------------------------------------

  // The cache per company (fresh entries only, unless asked): {company: {creds, keys: [[type, id, value]], cached_at}}.
  cacheSnapshot ({ includeExpired = false } = {}) {
    const nowWall = Date.now() / 1000
    const now = this.clock.monotonic()
    const out = {}
    for (const [key, entry] of this.cache.valid()) {
      if (!includeExpired && this.cache.isExpired(entry)) continue
      const k = parseKey(key)
      const company = (out[k[1]] ??= { creds: null, keys: [], cached_at: Infinity })
      const value = entry.value === null ? null : decode(entry.value, k[0] === 'creds' ? credsWhere(k[1]) : keyWhere(k[1], k[2], k[3]))
      if (k[0] === 'creds') company.creds = value
      else company.keys.push([k[2], k[3], value])
      company.cached_at = Math.min(company.cached_at, nowWall - (now - entry.fetchedAt))
    }
    for (const company of Object.values(out)) company.keys.sort((a, b) => (a[0] + '\0' + a[1] < b[0] + '\0' + b[1] ? -1 : 1))
    return out
  }

  // Write the cache as Baileys folders, dir/<company>/, with Baileys' own useMultiFileAuthState (creds.json
  // and one file per key); a company whose creds are not cached is left out, because without creds.json
  // Baileys would start a new login.
  async exportCache (dir, { includeExpired = false } = {}) {
    const snapshot = this.cacheSnapshot({ includeExpired })
    const companies = []
    const missing = {}
    let files = 0
    await mkdir(dir, { recursive: true, mode: 0o700 })
    for (const [company, snap] of Object.entries(snapshot).sort()) {
      if (!snap.creds) {
        missing[company] = 'creds are not in the cache'
        continue
      }
      if (company === '.' || company === '..' || /[/\\\0]/.test(company)) throw invalidInput(`company id ${quote(company)} cannot name a folder`, 'company_id')
      const folder = join(dir, company)
      if (await stat(folder).catch(() => null)) throw invalidInput(`export folder ${folder} already exists; export into a fresh directory`, 'dir', folder)
      await mkdir(folder, { mode: 0o700 })
      const { state, saveCreds } = await useMultiFileAuthState(folder)
      for (const field of Object.keys(initAuthCreds())) delete state.creds[field]
      Object.assign(state.creds, snap.creds)
      await saveCreds()
      const data = {}
      for (const [type, id, value] of snap.keys) {
        if (value === null) continue
        ;(data[type] ??= {})[id] = value
        files += 1
      }
      await state.keys.set(data)
      await chmod(folder, 0o700)
      companies.push(company)
    }
    return { companies, files, missing }
  }
}

// Baileys' auth-state shape for one company, as useMultiFileAuthState returns it, on top of an AuthBridge.
export async function usePostgresAuthState (bridge, companyId) {
  const creds = (await bridge.readCreds(companyId)) || initAuthCreds()
  return {
    state: {
      creds,
      keys: {
        get: async (type, ids) => {
          const found = await bridge.getKeys(companyId, type, ids)
          if (type !== 'app-state-sync-key') return found
          // As useMultiFileAuthState does: Baileys expects the protobuf object for this type.
          return Object.fromEntries(Object.entries(found).map(([id, v]) => [id, v && proto.Message.AppStateSyncKeyData.fromObject(v)]))
        },
        set: async (data) => { await bridge.setKeys(companyId, data) }
      }
    },
    saveCreds: () => bridge.saveCreds(companyId, creds)
  }
}
