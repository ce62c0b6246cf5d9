import { SigningKeys } from '../auth/signing-keys.js'
import { statePath } from '../config/load.js'
import { rotateFileKeyring } from '../protect/keyring.js'
import { keyringFor } from '../protect/setup.js'
import { Vault } from '../protect/vault.js'
import { loadConfig } from './config-path.js'
import { auditTrail } from './keys.js'
import { EXIT, type Parsed } from './usage.js'

/**
 * `secrets rotate`: a new active key (the state directory's keyring; with configured keys, the
 * configured `active` one), then everything stored encrypted is re-encrypted under it.
 */
export function secretsRotate(p: Parsed): number {
  const loaded = loadConfig(p.string('config'))
  // Opened first: a trail sealed under another key refuses before anything changes.
  const audit = auditTrail(loaded)
  const keyring = loaded.config.secrets.keys === undefined ? rotateFileKeyring(statePath(loaded, loaded.config.secrets.keyringFile)) : keyringFor(loaded)
  const vault = new Vault(statePath(loaded, loaded.config.vault.file), () => keyring).reencrypt(keyring)
  const { tokenService } = loaded.config.auth
  const signing = new SigningKeys(statePath(loaded, tokenService.signingKeysFile), tokenService.accessTokenSeconds, () => keyring).reencrypt(keyring)
  audit.record({ event: 'secrets.rotated', key: keyring.activeId, decision: 'allow', reason: 'OK', transport: 'cli', vaultEntries: vault, signingKeys: signing })
  audit.close()
  process.stdout.write(`key ${keyring.activeId} is active; re-encrypted ${vault} vault entr${vault === 1 ? 'y' : 'ies'} and ${signing} signing key(s)\n`)
  return EXIT.ok
}
