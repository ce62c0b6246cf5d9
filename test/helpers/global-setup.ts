import { execFileSync } from 'node:child_process'

/** The CLI and stdio tests run the built binary: build once before any test. */
export default function setup(): void {
  execFileSync('npx', ['tsc', '-b', 'tsconfig.json'], { stdio: 'inherit' })
}
