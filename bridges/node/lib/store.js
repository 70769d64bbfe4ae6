// PgStore: creds and keys of every company in whatsapp_auth / whatsapp_keys, one round trip per call, no cache.
import pg from 'pg'
import fs from 'node:fs'
import { performance } from 'node:perf_hooks'
import { BridgeError, DATABASE_UNAVAILABLE, OUTCOME_UNKNOWN, STORE_ERROR, invalidInput } from './errors.js'

const JSONB_OID = 3802
// jsonb arrives as text: Baileys' BufferJSON.reviver revives it, and the cache keeps the text (immutable).
const types = { getTypeParser: (oid, format) => oid === JSONB_OID ? (text) => text : pg.types.getTypeParser(oid, format) }

const GET_KEYS_SQL = 'SELECT key_id, value FROM whatsapp_keys WHERE company_id = $1 AND key_type = $2 AND key_id = ANY($3)'
// One statement is one transaction: the upserts and deletes of one keys.set commit together.
const SET_KEYS_SQL = `
WITH upserted AS (
    INSERT INTO whatsapp_keys AS k (company_id, key_type, key_id, value)
    SELECT $1, r.t, r.i, r.v FROM jsonb_to_recordset($2::jsonb) AS r(t text, i text, v jsonb)
    ON CONFLICT (company_id, key_type, key_id) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
    RETURNING 1
), deleted AS (
    DELETE FROM whatsapp_keys
    WHERE company_id = $1 AND (key_type, key_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))
    RETURNING 1
)
SELECT (SELECT count(*) FROM upserted)::int AS upserted, (SELECT count(*) FROM deleted)::int AS deleted`
const GET_CREDS_SQL = 'SELECT creds FROM whatsapp_auth WHERE company_id = $1'
const SAVE_CREDS_SQL = `INSERT INTO whatsapp_auth (company_id, creds) VALUES ($1, $2::jsonb)
ON CONFLICT (company_id) DO UPDATE SET creds = EXCLUDED.creds, updated_at = now()`

// A libpq DSN (key=value pairs, values optionally single-quoted) or a postgres:// URL, as pg settings.
export function parseDsn (dsn) {
  if (typeof dsn !== 'string' || !dsn.trim()) throw invalidInput('no database DSN given', 'dsn')
  if (/^postgres(ql)?:\/\//.test(dsn)) {
    const url = new URL(dsn)
    const q = url.searchParams
    return {
      host: url.hostname,
      port: Number(url.port || 5432),
      database: url.pathname.slice(1),
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      ssl: tlsSettings(q.get('sslmode'), q.get('sslrootcert'))
    }
  }
  const out = {}
  const re = /\s*([a-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))\s*/y
  let at = 0
  while (at < dsn.length) {
    re.lastIndex = at
    const m = re.exec(dsn)
    if (!m) throw invalidInput(`malformed DSN at character ${at}: expected key=value pairs or a postgres:// URL`, 'dsn')
    out[m[1]] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]
    at = re.lastIndex
  }
  return {
    host: out.host || 'localhost',
    port: Number(out.port || 5432),
    database: out.dbname,
    user: out.user,
    password: out.password,
    ssl: tlsSettings(out.sslmode, out.sslrootcert)
  }
}

// libpq's sslmode as pg's ssl settings. No sslmode means verify-full, as for the Python bridge; modes that
// may fall back to plain TCP (allow, prefer) are refused, so a server with TLS off is never used in clear.
export function tlsSettings (sslmode, sslrootcert) {
  const mode = sslmode || 'verify-full'
  if (mode === 'disable') return false
  if (mode === 'require') return { rejectUnauthorized: false }
  if (mode !== 'verify-ca' && mode !== 'verify-full') {
    throw invalidInput(`sslmode=${mode} is not supported: use disable, require, verify-ca or verify-full`, 'dsn')
  }
  let ca
  if (sslrootcert) {
    try {
      ca = fs.readFileSync(sslrootcert, 'utf8')
    } catch (err) {
      throw invalidInput(`sslrootcert ${sslrootcert} cannot be read: ${err.code || err.message}`, 'dsn')
    }
  }
  const ssl = { rejectUnauthorized: true, ca }
  // verify-ca checks the chain only; verify-full also the host name (Node's default identity check).
  if (mode === 'verify-ca') ssl.checkServerIdentity = () => undefined
  return ssl
}

export const describe = (p) => `${p.host}:${p.port}/${p.database}`

// libpq treats a connect timeout under 2 s as 2 s; so does the twin, so both bridges give up at the same time.
export const connectTimeoutMs = (seconds) => Math.round(Math.max(2, seconds) * 1000)

// A connection that drops while lent out emits 'error' besides failing its query; unheard, that event would
// crash the process, and the query's own error already says what happened.
const guarded = new WeakSet()
const guard = (client) => {
  if (!guarded.has(client)) {
    client.on('error', () => {})
    guarded.add(client)
  }
  return client
}

const QUERY_TIMEOUT = 'Query read timeout' // pg's error when query_timeout passes

// A pg error without a SQLSTATE, or one that ends the session, means the connection itself failed.
const connectionLost = (err) => !(typeof err.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code)) || /^(08|57P)/.test(err.code)

export class PgStore {
  constructor (config, monitor = null) {
    this.params = parseDsn(config.dsn)
    this.target = describe(this.params)
    this.monitor = monitor
    // The server cancels at statement_timeout; the client deadline catches servers that cannot answer.
    this.opTimeoutS = config.statement_timeout_s + Math.max(1, config.statement_timeout_s / 2)
    this.poolMax = config.pool_max
    this.waitS = config.connect_timeout_s
    this.pool = new pg.Pool({
      ...this.params,
      types,
      max: config.pool_max,
      connectionTimeoutMillis: connectTimeoutMs(config.connect_timeout_s),
      statement_timeout: Math.round(config.statement_timeout_s * 1000),
      query_timeout: Math.round(this.opTimeoutS * 1000),
      idleTimeoutMillis: 30000
    })
    this.pool.on('error', () => {}) // an idle client's connection dropped: the pool replaces it on demand
  }

  unavailable (message, kind = DATABASE_UNAVAILABLE) {
    return new BridgeError(kind, message, { host: this.params.host, port: this.params.port, dbname: this.params.database })
  }

  poolInUse () {
    return this.pool.totalCount - this.pool.idleCount
  }

  // A pooled connection. When every one is lent out, wait for one at most connect_timeout_s, as the Python
  // bridge's pool does (pg's own timer also bounds connecting, which libpq rounds up to 2 s).
  async checkout () {
    const full = this.pool.totalCount >= this.poolMax && this.pool.idleCount === 0
    const pending = this.pool.connect()
    if (!full) return pending
    let timer
    const waited = new Promise((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no free connection within ${this.waitS}s`)), this.waitS * 1000)
    })
    try {
      return await Promise.race([pending, waited])
    } catch (err) {
      pending.then((client) => client.release(), () => {}) // given up on: hand it back when it comes
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  // Run one statement; report its latency and the pool's use; translate failures into the taxonomy.
  async run (kind, what, sql, params, { write }) {
    let client
    try {
      client = guard(await this.checkout())
    } catch (err) {
      const pool = `${this.poolInUse()}/${this.poolMax} connections in use, ${this.pool.waitingCount} waiting`
      throw this.unavailable(`${what}: no database connection to ${this.target} (pool: ${pool}; ${err.message})`)
    }
    this.monitor?.observePool(this.poolInUse(), this.poolMax)
    const start = performance.now()
    try {
      const result = await client.query(sql, params)
      client.release()
      return result.rows
    } catch (err) {
      const lost = connectionLost(err) || err.code === '57014'
      client.release(lost ? err : undefined)
      if (err.code === '57014') throw this.unavailable(`${what}: statement timed out on ${this.target} (${err.message})`)
      if (!connectionLost(err)) throw new BridgeError(STORE_ERROR, `${what}: database ${this.target} refused it [${err.code}]: ${err.message}`, { sqlstate: err.code })
      // pg's query_timeout: the client deadline passed and the connection is cut; say so, as the Python bridge does.
      const failed = err.message === QUERY_TIMEOUT
        ? `timed out: no answer from ${this.target} within the ${this.opTimeoutS}s client deadline, connection cut`
        : `connection to ${this.target} failed`
      if (write) throw this.unavailable(`${what}: ${failed} while the write was in flight; it may or may not have committed (${err.message})`, OUTCOME_UNKNOWN)
      throw this.unavailable(`${what}: ${err.message === QUERY_TIMEOUT ? failed : `database ${this.target} unavailable`} (${err.message})`)
    } finally {
      this.monitor?.observeQuery(kind, (performance.now() - start) / 1000)
    }
  }

  // {id: stored text or null} for every id asked for.
  async getStoredKeys (company, type, ids) {
    const result = Object.fromEntries(ids.map((id) => [id, null]))
    if (!ids.length) return result
    const rows = await this.run('get_keys', `get ${ids.length} ${type} keys of company ${company} in whatsapp_keys`, GET_KEYS_SQL, [company, type, ids], { write: false })
    for (const row of rows) result[row.key_id] = row.value
    return result
  }

  async getStoredCreds (company) {
    const rows = await this.run('get_creds', `get creds of company ${company} in whatsapp_auth`, GET_CREDS_SQL, [company], { write: false })
    return rows.length ? rows[0].creds : null
  }

  // rows: [{t, i, v}] with v already encoded text; deletes: [[type, id]].
  async writeSet (company, rows, deletes) {
    if (!rows.length && !deletes.length) return { upserted: 0, deleted: 0 }
    const json = '[' + rows.map((r) => `{"t":${JSON.stringify(r.t)},"i":${JSON.stringify(r.i)},"v":${r.v}}`).join(',') + ']'
    const params = [company, json, deletes.map((d) => d[0]), deletes.map((d) => d[1])]
    const [counts] = await this.run('set_keys', `set ${rows.length + deletes.length} keys of company ${company} in whatsapp_keys`, SET_KEYS_SQL, params, { write: true })
    return counts
  }

  async writeCreds (company, text) {
    await this.run('save_creds', `save creds of company ${company} in whatsapp_auth`, SAVE_CREDS_SQL, [company, text], { write: true })
  }

  async close () {
    await this.pool.end()
  }
}

// The health probe: one connection of its own, SELECT 1 under the probe timeout, reconnect after a failure.
export class Probe {
  constructor (config) {
    this.params = parseDsn(config.dsn)
    this.connectMs = connectTimeoutMs(config.connect_timeout_s)
    this.timeoutMs = Math.round(config.probe_timeout_s * 1000)
    this.client = null
  }

  async check () {
    const start = performance.now()
    try {
      if (!this.client) {
        const client = new pg.Client({ ...this.params, connectionTimeoutMillis: this.connectMs, query_timeout: this.timeoutMs })
        client.on('error', () => {})
        this.client = client
        await client.connect()
      }
      await this.client.query('SELECT 1')
      return (performance.now() - start) / 1000
    } catch (err) {
      const client = this.client
      this.client = null
      client?.end().catch(() => {})
      throw new BridgeError(DATABASE_UNAVAILABLE, `probe of ${describe(this.params)} failed: ${err.message}`, { host: this.params.host, port: this.params.port, dbname: this.params.database })
    }
  }

  async close () {
    const client = this.client
    this.client = null
    await client?.end().catch(() => {})
  }
}
