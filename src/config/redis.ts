import { Redis } from 'ioredis'
import { SecurityError } from '../errors.js'

/**
 * A Redis connection as bastion uses it everywhere it fails closed: no command queue while
 * disconnected (a command fails at once instead of waiting), no retries per command, a deadline
 * per command, and reconnection in the background. Errors reach `onError` without the URL.
 */
export function connectRedis(url: string, options: { timeoutMs: number; label: string; onError?: ((error: Error) => void) | undefined }): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.timeoutMs,
    connectTimeout: Math.max(1000, options.timeoutMs),
    retryStrategy: (times) => Math.min(50 * times, 1000),
  })
  redis.on('error', (error: Error) => options.onError?.(new Error(`redis (${options.label}): ${error.name}: ${redactRedisUrl(error.message)}`)))
  return redis
}

/** Wait for the first connection; false if it does not come within `timeoutMs`. */
export function redisReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady)
      resolve(false)
    }, timeoutMs)
    const onReady = (): void => {
      clearTimeout(timer)
      resolve(true)
    }
    redis.once('ready', onReady)
  })
}

/** Connection errors may quote the URL; never let a password reach a log. */
export function redactRedisUrl(text: string): string {
  return text.replace(/(rediss?:\/\/)[^@\s/]*@/gi, '$1[redacted]@')
}

/**
 * Run one Redis command of a store that fails closed: any failure (down, timed out, refused)
 * becomes ERR_AUTH_UNAVAILABLE naming the store, a 503 to retry, never a pass or a "not found".
 */
export async function storeCall<T>(store: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (error) {
    throw new SecurityError('ERR_AUTH_UNAVAILABLE', `${store} unavailable: ${error instanceof Error ? redactRedisUrl(error.message) : 'error'}`, { cause: error })
  }
}
