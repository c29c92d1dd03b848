import * as E from 'fp-ts/lib/Either.js'

import type { ClientDeclaration } from '../config/clients.js'
import { expandTemplate } from './credentialSources.js'

/** The shortest token a client may have once its template is filled in. */
const MIN_TOKEN_LENGTH = 16

/**
 * Fills in each client's token template (`${env:…}`, `${file:…}`, `${base64:…}`, as credential
 * headers are). Errors name the client and what is missing, never a value.
 */
export const resolveClientTokens = async (clients: ReadonlyArray<ClientDeclaration>, env: NodeJS.ProcessEnv): Promise<E.Either<ReadonlyArray<string>, ReadonlyMap<string, string>>> => {
  const tokens = new Map<string, string>()
  const errors: Array<string> = []
  for (const client of clients) {
    const token = await expandTemplate(client.token, env)
    if (E.isLeft(token)) errors.push(`client \`${client.name}\`: its token cannot be read: ${token.left}`)
    else if (token.right.length < MIN_TOKEN_LENGTH) errors.push(`client \`${client.name}\`: its token is shorter than ${MIN_TOKEN_LENGTH} characters; use a long random one`)
    // Tokens travel in a URL's user info and are compared byte for byte: printable ASCII only.
    else if (!/^[\x21-\x7e]+$/.test(token.right)) errors.push(`client \`${client.name}\`: its token holds a space, a control or a non-ASCII character; use printable ASCII`)
    else tokens.set(client.name, token.right)
  }
  return errors.length > 0 ? E.left(errors) : E.right(tokens)
}
