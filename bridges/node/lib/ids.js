// Validation of company ids, key types and key ids: the same rules and limits as the Python bridge.
import { invalidInput } from './errors.js'

export const KEY_TYPES = ['pre-key', 'session', 'sender-key', 'sender-key-memory', 'app-state-sync-key', 'app-state-sync-version']
const MAX_COMPANY_ID_CHARS = 128
const MAX_KEY_ID_CHARS = 512
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

export const quote = (value) => {
  const text = JSON.stringify(value) ?? String(value)
  return text.length <= 60 ? text : `${text.slice(0, 60)}...(${text.length} chars)`
}

function checkName (value, field, maxChars, where) {
  const at = where ? ` (in ${where})` : ''
  if (typeof value !== 'string') throw invalidInput(`${field} must be a string, got ${typeof value} ${quote(value)}${at}`, field, where)
  if (!value) throw invalidInput(`${field} is empty${at}`, field, where)
  if (value.length > maxChars) throw invalidInput(`${field} ${quote(value)} is ${value.length} characters, above the limit of ${maxChars}${at}`, field, where)
  const bad = CONTROL.exec(value)
  if (bad) throw invalidInput(`${field} ${quote(value)} contains control character U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} at position ${bad.index}${at}`, field, where)
  return value
}

export const validateCompanyId = (id) => checkName(id, 'company_id', MAX_COMPANY_ID_CHARS, null)

export function validateKeyType (type, companyId) {
  if (!KEY_TYPES.includes(type)) {
    throw invalidInput(`unknown key type ${quote(type)} (company ${quote(companyId)}); valid types: ${KEY_TYPES.join(', ')}`, 'key_type', companyId)
  }
  return type
}

export function validateKeyIds (ids, type, companyId) {
  if (!Array.isArray(ids)) {
    throw invalidInput(`ids for type ${type} of company ${quote(companyId)} must be a list of key ids, not ${quote(ids)}`, 'ids', companyId)
  }
  return ids.map((id) => checkName(id, 'key_id', MAX_KEY_ID_CHARS, `company ${quote(companyId)}, type ${type}`))
}
