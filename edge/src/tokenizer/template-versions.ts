// What differs between Mistral's chat template versions, one object per version behind one interface;
// chat-template.ts writes every conversation with whichever one the tokenizer declares.

/** One template version: how a user turn is wrapped, where the system prompt goes, how replies are cleaned. */
export interface TemplateVersion {
  /** Control ids that open and close a user turn. */
  openIds: number[];
  closeIds: number[];
  /** Text that opens and closes a user turn's words (the system prompt goes between `open` and the words). */
  openText: string;
  closeText: string;
  /** The user turn (1-based, of `userTurnCount`) that carries the system prompt. */
  systemTurn(userTurnCount: number): number;
  /** An assistant turn's text as the template writes it. */
  assistantText(content: string): string;
}

const INST_ID = 3; // v3 control piece [INST]
const END_INST_ID = 4; // v3 control piece [/INST]

/** v1 (7B v0.1/v0.2): "[INST] ... [/INST]" as text; the system prompt opens the FIRST user turn. */
const V1: TemplateVersion = {
  openIds: [],
  closeIds: [],
  openText: '[INST] ',
  closeText: ' [/INST]',
  systemTurn: () => 1,
  assistantText: (content) => content,
};

/** v3 (7B v0.3): control ids 3/4 around each user turn; the system prompt opens the LAST user turn. */
const V3: TemplateVersion = {
  openIds: [INST_ID],
  closeIds: [END_INST_ID],
  openText: '',
  closeText: '',
  systemTurn: (userTurnCount) => userTurnCount,
  // mistral-common's rstrip(" "): trailing spaces only, so a trailing newline stays.
  assistantText: (content) => content.replace(/ +$/, ''),
};

export const TEMPLATE_VERSIONS: Record<'v1' | 'v3', TemplateVersion> = { v1: V1, v3: V3 };
