// Types for the npm package mistral-tokenizer-js (ships none): the backend reads the built-in model's v1
// vocabulary from it; tests decode ids with it as an independent v1 decoder.
declare module 'mistral-tokenizer-js' {
  const mistralTokenizer: {
    encode(prompt: string, addBosToken?: boolean, addPrecedingSpace?: boolean): number[];
    decode(tokenIds: number[], addBosToken?: boolean, addPrecedingSpace?: boolean): string;
    vocabById: string[];
  };
  export default mistralTokenizer;
}
