// npm run bench:auth: what token authentication costs per request against API-key authentication,
// in one run: ES256 JWTs with the verified-token cache, and with it switched off (a signature
// check per call). Writes bench/results/auth.md.
import { machine, measure, method, publish, table } from './lib.mjs'

const CONFIGS = [
  ['bastion-minimal', 'API key'],
  ['bastion-jwt', 'JWT ES256, token cache'],
  ['bastion-jwt-nocache', 'JWT ES256, no cache'],
]
const results = await measure(CONFIGS)
publish('auth.md', ['# Token authentication cost', '', `Machine: ${machine()}.`, method('API key'), '', ...table(CONFIGS, results, 'bastion-minimal', 32)])
