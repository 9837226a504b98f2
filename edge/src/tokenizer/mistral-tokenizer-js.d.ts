// Types for the npm package mistral-tokenizer-js (ships none); tests use it as an independent v1 encoder.
declare module 'mistral-tokenizer-js' {
  const mistralTokenizer: {
    encode(prompt: string, addBosToken?: boolean, addPrecedingSpace?: boolean): number[];
    decode(tokenIds: number[], addBosToken?: boolean, addPrecedingSpace?: boolean): string;
    vocabById: string[];
    merges: Map<string, number>;
  };
  export default mistralTokenizer;
}
