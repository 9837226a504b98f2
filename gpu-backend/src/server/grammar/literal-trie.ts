// XGrammar 0.1.27 matches an alternation of string literals that share a head wrongly: `"909" | "963"`
// accepts "903" (found by the grammar fuzz test in enums; the JSON Schema `enum` [898, 909, 963, 969] is
// the smallest case). The same language written as a trie, `"9" ("09" | "6" ("3" | "9"))`, where no two
// alternatives start with the same character, matches exactly. Rules made only of literal alternatives (what
// `enum` and `const` compile to) are rewritten so.

/** `name ::= (("lit") | ("lit") | ...)`, as XGrammar prints an enum: every alternative one literal. */
const LITERAL_RULE = /^(\S+) ::= \((\("(?:\\.|[^"\\])*"\)(?: \| \("(?:\\.|[^"\\])*"\))+)\)$/gm;
const LITERAL = /\("((?:\\.|[^"\\])*)"\)/g;
/** One character of a literal's body: an escape sequence or a code point. */
const CHARACTER = /\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}|\\x[0-9a-fA-F]{2}|\\.|[^\\]/gu;

interface TrieNode {
  children: Map<string, TrieNode>;
  /** A literal ends here. */
  end: boolean;
}

function insert(root: TrieNode, characters: string[]): void {
  let node = root;
  for (const character of characters) {
    let child = node.children.get(character);
    if (!child) {
      child = { children: new Map(), end: false };
      node.children.set(character, child);
    }
    node = child;
  }
  node.end = true;
}

/** The EBNF of what may follow `node`: one branch per distinct next character, runs of one child kept together. */
function expression(node: TrieNode): string {
  const branches: string[] = [];
  for (const [character, child] of node.children) {
    let run = character;
    let next = child;
    while (!next.end && next.children.size === 1) {
      const [[following, grandchild]] = next.children;
      run += following;
      next = grandchild;
    }
    branches.push(next.children.size === 0 ? `"${run}"` : `"${run}" ${expression(next)}`);
  }
  if (node.end) branches.push('""');
  return branches.length === 1 ? branches[0] : `(${branches.join(' | ')})`;
}

/** `ebnf` with every literal-alternation rule written as a trie (the same strings, matched exactly). */
export function factorLiteralAlternations(ebnf: string): string {
  return ebnf.replace(LITERAL_RULE, (line, name: string, body: string) => {
    const literals = [...body.matchAll(LITERAL)].map((match) => match[1].match(CHARACTER) ?? []);
    if (literals.length < 2) return line;
    const root: TrieNode = { children: new Map(), end: false };
    for (const characters of literals) insert(root, characters);
    return `${name} ::= ${expression(root)}`;
  });
}
