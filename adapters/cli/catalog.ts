import * as E from 'fp-ts/lib/Either.js'

import type { AllowInput } from '../../core/index.js'
import { decodePolicy, type LoadedPolicy } from '../config/PolicyFile.js'

/** How a key is written into its header: `Bearer <key>`, the key alone, or HTTP Basic with a fixed user. */
export type Scheme = 'Bearer' | 'raw' | { readonly basicUser: string }

/** The header template for a key in `envVar` written in `scheme`. */
const templateOf = (scheme: Scheme, envVar: string): string =>
  scheme === 'Bearer' ? `Bearer \${env:${envVar}}` : scheme === 'raw' ? `\${env:${envVar}}` : `Basic \${base64:${scheme.basicUser}:\${env:${envVar}}}`

/** A widely used API provider: where its API lives, how it authenticates, where its SDK looks for a key. */
export interface CatalogProvider {
  readonly name: string
  readonly apiUrl: ReadonlyArray<string>
  readonly oauth?: { readonly authorizationUrl?: string; readonly tokenUrl?: string; readonly revocationUrl?: string; readonly deviceAuthorizationUrl?: string }
  /** The header the API expects, and how the key is written into it. */
  readonly header: string
  readonly scheme: Scheme
  /** Where the credential may be used on those URLs (docs/spec.md §10); everywhere they cover when absent. */
  readonly allow?: AllowInput
  /**
   * Other headers an official SDK sends the key in, set to the real key too, so that the
   * placeholder the SDK holds never reaches the upstream in any of them.
   */
  readonly alsoIn?: Readonly<Record<string, Scheme>>
  /** The variable the SDK reads, which also holds the real key for the proxy. */
  readonly envVar: string
  /** The prefix the provider's keys carry, which `run`'s placeholder keeps for SDKs that check a key's shape. */
  readonly keyPrefix?: string
}

const bearer = (name: string, apiUrl: ReadonlyArray<string>, envVar: string, oauth?: CatalogProvider['oauth']): CatalogProvider => ({
  name,
  apiUrl,
  header: 'Authorization',
  scheme: 'Bearer',
  envVar,
  ...(oauth === undefined ? {} : { oauth })
})

/** The embedded default policy's providers. */
export const CATALOG: ReadonlyArray<CatalogProvider> = [
  { ...bearer('openai', ['https://api.openai.com/v1'], 'OPENAI_API_KEY', { tokenUrl: 'https://auth.openai.com/oauth/token', authorizationUrl: 'https://auth.openai.com/authorize' }), keyPrefix: 'sk-' },
  // @anthropic-ai/sdk 0.x sends the key as `x-api-key`, 1.x as `Authorization: Bearer`.
  { name: 'anthropic', apiUrl: ['https://api.anthropic.com/v1'], header: 'x-api-key', scheme: 'raw', envVar: 'ANTHROPIC_API_KEY', alsoIn: { Authorization: 'Bearer' }, keyPrefix: 'sk-ant-' },
  bearer('github', ['https://api.github.com', 'https://uploads.github.com', 'regex:(?:[a-z0-9-]+\\.)?githubusercontent\\.com'], 'GITHUB_TOKEN', {
    authorizationUrl: 'https://github.com/login/oauth/authorize',
    tokenUrl: 'https://github.com/login/oauth/access_token',
    deviceAuthorizationUrl: 'https://github.com/login/device/code'
  }),
  // git over HTTPS on github.com: the smart-HTTP endpoints only (clone, fetch, push), with the
  // credential git expects (Basic, user `x-access-token`); everything else on github.com gets nothing.
  {
    name: 'github-git',
    apiUrl: ['https://github.com'],
    header: 'Authorization',
    scheme: { basicUser: 'x-access-token' },
    envVar: 'GITHUB_TOKEN',
    allow: { methods: ['GET', 'POST'], paths: ['/*/*/info/refs', '/*/*/git-upload-pack', '/*/*/git-receive-pack'] }
  },
  // @gitbeaker sends a personal token as PRIVATE-TOKEN and an OAuth token as Authorization: Bearer.
  { name: 'gitlab', apiUrl: ['https://gitlab.com/api/v4'], header: 'PRIVATE-TOKEN', scheme: 'raw', envVar: 'GITLAB_TOKEN', alsoIn: { Authorization: 'Bearer' } },
  { name: 'gemini', apiUrl: ['https://generativelanguage.googleapis.com'], header: 'x-goog-api-key', scheme: 'raw', envVar: 'GEMINI_API_KEY' },
  bearer('mistral', ['https://api.mistral.ai/v1'], 'MISTRAL_API_KEY'),
  { ...bearer('groq', ['https://api.groq.com/openai/v1'], 'GROQ_API_KEY'), keyPrefix: 'gsk_' },
  {
    ...bearer('huggingface', ['https://huggingface.co', 'https://router.huggingface.co', 'https://api-inference.huggingface.co'], 'HF_TOKEN', {
      authorizationUrl: 'https://huggingface.co/oauth/authorize',
      tokenUrl: 'https://huggingface.co/oauth/token'
    }),
    keyPrefix: 'hf_'
  },
  bearer('stripe', ['https://api.stripe.com', 'https://files.stripe.com'], 'STRIPE_API_KEY', { tokenUrl: 'https://connect.stripe.com/oauth/token' }),
  bearer('slack', ['https://slack.com/api'], 'SLACK_BOT_TOKEN', {
    authorizationUrl: 'https://slack.com/oauth/v2/authorize',
    tokenUrl: 'https://slack.com/api/oauth.v2.access',
    revocationUrl: 'https://slack.com/api/auth.revoke'
  }),
  { ...bearer('openrouter', ['https://openrouter.ai/api/v1'], 'OPENROUTER_API_KEY'), keyPrefix: 'sk-or-' },
  bearer('cohere', ['https://api.cohere.com'], 'CO_API_KEY'),
  // DeepSeek's Anthropic-compatible endpoint (/anthropic) takes the key as x-api-key.
  { ...bearer('deepseek', ['https://api.deepseek.com'], 'DEEPSEEK_API_KEY'), alsoIn: { 'x-api-key': 'raw' }, keyPrefix: 'sk-' }
]

/**
 * The catalog as a policy. A provider has a (default) connection only when its variable is set
 * in `env`, so connected scope routes exactly the providers whose keys are present.
 */
export const catalogPolicy = (env: NodeJS.ProcessEnv): LoadedPolicy => {
  const document = {
    providers: CATALOG.map((p) => ({ name: p.name, apiUrl: p.apiUrl, envVar: p.envVar, ...(p.keyPrefix === undefined ? {} : { keyPrefix: p.keyPrefix }), ...(p.oauth === undefined ? {} : { oauth: p.oauth }) })),
    connections: CATALOG.filter((p) => (env[p.envVar] ?? '') !== '').map((p) => ({
      provider: p.name,
      name: 'default',
      credentials: { headers: Object.fromEntries(Object.entries({ [p.header]: p.scheme, ...p.alsoIn }).map(([header, scheme]) => [header, templateOf(scheme, p.envVar)])) },
      ...(p.allow === undefined ? {} : { allow: p.allow })
    }))
  }
  const decoded = decodePolicy(document)
  // INVARIANT: the catalog is data of this package; a test decodes it with every variable set.
  if (E.isLeft(decoded)) throw new Error(`the bundled catalog does not decode: ${decoded.left.messages.join('; ')}`)
  return decoded.right
}
