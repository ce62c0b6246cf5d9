/** Who is calling, after authentication. Never carries a secret. */
export interface Principal {
  /** Stable id for audit and session binding, e.g. `key:3f9a…`. */
  readonly id: string
  readonly kind: 'api-key' | 'jwt' | 'opaque'
  /** Human name of the credential. */
  readonly name: string
  readonly roles: readonly string[]
  /** Tenant the principal acts for, when the deployment has tenants. */
  readonly tenant?: string
  /** OAuth scopes granted to the credential (none for API keys). */
  readonly scopes?: readonly string[]
  /** Token claims, for policy conditions (none for API keys). */
  readonly claims?: Readonly<Record<string, unknown>>
}
