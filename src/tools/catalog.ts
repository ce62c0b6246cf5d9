import type { z } from 'zod'
import type { GetPromptResult, ReadResourceResult, ServerContext } from '../protocol.js'

/** A resource at a fixed URI. */
export interface ResourceDefinition {
  readonly name: string
  readonly uri: string
  readonly description?: string
  readonly mimeType?: string
  /** Permissions that may read it (any of). None: only `*`. */
  readonly permissions?: readonly string[]
  /** True while it may not be listed or read (a gateway resource whose upstream definition drifted). */
  blocked?(): boolean
  read(uri: URL, mcp: ServerContext): Promise<ReadResourceResult>
}

/** Resources matching an RFC 6570 level-1 URI template, e.g. `docs://{id}`. */
export interface ResourceTemplateDefinition {
  readonly name: string
  readonly uriTemplate: string
  readonly description?: string
  readonly mimeType?: string
  readonly permissions?: readonly string[]
  read(uri: URL, variables: Record<string, string | string[]>, mcp: ServerContext): Promise<ReadResourceResult>
}

/** A prompt with zod-described string arguments. */
export interface PromptDefinition {
  readonly name: string
  readonly title?: string
  readonly description?: string
  readonly args?: z.ZodObject
  readonly permissions?: readonly string[]
  /** True while it may not be listed or got (a gateway prompt whose upstream definition drifted). */
  blocked?(): boolean
  get(args: Record<string, string>, mcp: ServerContext): Promise<GetPromptResult>
}

/** Resources, templates and prompts registered with a bastion, in registration order. */
export class Catalog {
  readonly resources: ResourceDefinition[] = []
  readonly templates: ResourceTemplateDefinition[] = []
  readonly prompts: PromptDefinition[] = []
  readonly #names = new Set<string>()

  #claim(kind: string, name: string): void {
    const key = `${kind}:${name}`
    if (this.#names.has(key)) throw new Error(`${kind} ${name} is already registered`)
    this.#names.add(key)
  }
  addResource(def: ResourceDefinition): void {
    this.#claim('resource', def.name)
    this.resources.push(def)
  }
  addTemplate(def: ResourceTemplateDefinition): void {
    this.#claim('resource', def.name)
    this.templates.push(def)
  }
  addPrompt(def: PromptDefinition): void {
    this.#claim('prompt', def.name)
    this.prompts.push(def)
  }
}
