import { existsSync } from 'node:fs'
import { embeddedConfig, type LoadedConfig, loadConfigFile } from '../config/load.js'

/** The config file a command uses: `--config`, else `$BASTION_CONFIG`, else `./bastion.yaml` if present. */
export function configPath(flag: string | undefined): string | undefined {
  if (flag !== undefined) return flag
  const env = process.env.BASTION_CONFIG
  if (env !== undefined && env !== '') return env
  return existsSync('bastion.yaml') ? 'bastion.yaml' : undefined
}

/** The config a command uses, else the embedded default (state in ./.bastion). Reads only. @throws ConfigError */
export function loadConfig(flag: string | undefined): LoadedConfig {
  const path = configPath(flag)
  return path === undefined ? embeddedConfig() : loadConfigFile(path)
}
