/** The reference shapes of issue #4 (f32, softmax top-k, swiglu). `quick` divides T by 8 for a smoke run. */
export interface LayerShape {
  name: string;
  tokens: number;
  hidden: number;
  experts: number;
  topK: number;
  ffn: number;
}

export const LAYER_SHAPES: LayerShape[] = [
  { name: 'mixtral-like', tokens: 4096, hidden: 1024, experts: 8, topK: 2, ffn: 1408 },
  { name: 'fine-grained', tokens: 4096, hidden: 1024, experts: 64, topK: 8, ffn: 256 },
];

export function scaled(shape: LayerShape, quick: boolean): LayerShape {
  return quick ? { ...shape, tokens: shape.tokens / 8 } : shape;
}

/** Forward FLOPs of the layer: router logits + swiglu experts (three matmuls per assignment). */
export function layerForwardFlops(s: LayerShape): number {
  return 2 * s.tokens * s.hidden * s.experts + 2 * s.tokens * s.topK * s.hidden * s.ffn * 3;
}
