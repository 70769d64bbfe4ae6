// Values in and out of jsonb with Baileys' own BufferJSON; strict on read, because a lenient decode hides corruption.
import { BufferJSON } from '@whiskeysockets/baileys'
import { BridgeError, CORRUPTED, invalidInput } from './errors.js'
import { quote } from './ids.js'

export { BufferJSON }
export const MAX_VALUE_BYTES = 1024 * 1024
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

// Encode a value for a jsonb column: the text Baileys would write to its file, checked before anything is sent.
export function encode (value, what, { objectOnly = false } = {}) {
  const ok = objectOnly
    ? value !== null && typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value)
    : value !== null && typeof value === 'object'
  if (!ok) throw invalidInput(`${what}: value must be ${objectOnly ? 'an object' : 'an object, an array or bytes (null deletes)'}, got ${quote(value)}`, 'value', what)
  let text
  try {
    text = JSON.stringify(value, BufferJSON.replacer)
  } catch (err) {
    throw invalidInput(`${what}: cannot be encoded as BufferJSON (${err.message})`, 'value', what)
  }
  if (Buffer.byteLength(text) > MAX_VALUE_BYTES) throw invalidInput(`${what}: encoded value is above the ${MAX_VALUE_BYTES}-byte limit`, 'value', what)
  if (text.includes('\\u0000')) throw invalidInput(`${what}: value contains a NUL character, which PostgreSQL jsonb cannot store`, 'value', what)
  return text
}

// Revive stored jsonb text as Baileys reads a file: Buffers back; a malformed Buffer object is corruption.
export function decode (text, where) {
  const strict = (key, value) => {
    if (value && typeof value === 'object' && (value.type === 'Buffer' || value.buffer === true)) {
      const data = value.data || value.value
      if (typeof data === 'string' ? !BASE64.test(data) : !(data == null || Array.isArray(data))) {
        throw new BridgeError(CORRUPTED, `${where.table} row ${where.name} is corrupted: malformed BufferJSON`, where.attrs)
      }
    }
    return BufferJSON.reviver(key, value)
  }
  const value = JSON.parse(text, strict)
  if (value === null || typeof value !== 'object' || (where.table === 'whatsapp_auth' && (Array.isArray(value) || Buffer.isBuffer(value)))) {
    throw new BridgeError(CORRUPTED, `${where.table} row ${where.name} is corrupted: not ${where.table === 'whatsapp_auth' ? 'a creds object' : 'an object or array'}`, where.attrs)
  }
  return value
}

export const credsWhere = (company) => ({
  table: 'whatsapp_auth',
  name: `of company ${quote(company)}`,
  attrs: { table: 'whatsapp_auth', company_id: company, key_type: null, key_id: null }
})

export const keyWhere = (company, type, id) => ({
  table: 'whatsapp_keys',
  name: `(${quote(company)}, ${type}, ${quote(id)})`,
  attrs: { table: 'whatsapp_keys', company_id: company, key_type: type, key_id: id }
})
