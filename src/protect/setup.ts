import { ConfigError, type LoadedConfig, readSecret, statePath } from '../config/load.js'
import { configuredKeyring, fileKeyring, type Keyring } from './keyring.js'

/** The keyring from config (`secrets.keys` + `secrets.active`), else the state directory's. @throws ConfigError */
export function keyringFor(loaded: LoadedConfig, env: NodeJS.ProcessEnv = process.env): Keyring {
  const { secrets } = loaded.config
  try {
    if (secrets.keys !== undefined && secrets.active !== undefined) {
      return configuredKeyring(
        secrets.keys.map((k, i) => ({ id: k.id, value: readSecret(loaded, k.key, `secrets.keys.${i}.key`, env) })),
        secrets.active,
      )
    }
    return fileKeyring(statePath(loaded, secrets.keyringFile))
  } catch (error) {
    if (error instanceof ConfigError) throw error
    throw new ConfigError(`config ${loaded.source}: secrets: ${error instanceof Error ? error.message : 'unusable keyring'}`)
  }
}
