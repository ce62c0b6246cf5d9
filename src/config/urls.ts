import { isIP } from 'node:net'
import { ConfigError, type LoadedConfig } from './load.js'

/** Is this a loopback bind address (or name)? */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '')
  if (h === 'localhost' || h === '::1') return true
  return isIP(h) === 4 && h.startsWith('127.')
}

/**
 * A URL bastion itself calls (JWKS, introspection, alert webhooks): HTTPS, or plain HTTP to a
 * loopback address only. @throws ConfigError naming the key
 */
export function secureUrl(loaded: LoadedConfig, where: string, text: string): URL {
  const url = new URL(text)
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname)))
    throw new ConfigError(`config ${loaded.source}: ${where}: must be https (plain http only to a loopback address)`)
  return url
}
