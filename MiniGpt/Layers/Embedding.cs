using System.Numerics.Tensors;

namespace MiniGpt.Layers;

/// <summary>Token and positional embedding: hook_embed, hook_pos_embed and the first residual stream.</summary>
public static class Embedding
{
    // tokens [B,T] → embed [B,T,D] = W_E[tokens], pos [B,T,D] = W_pos[t], resid [B,T,D] = embed (+ pos when addPos)
    public static void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<float> wE, ReadOnlySpan<float> wPos,
        Span<float> embed, Span<float> pos, Span<float> resid, int B, int T, int D, bool addPos)
    {
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
            {
                int n = b * T + t;
                var e = embed.Slice(n * D, D);
                var p = pos.Slice(n * D, D);
                wE.Slice(tokens[n] * D, D).CopyTo(e);
                wPos.Slice(t * D, D).CopyTo(p);
                if (addPos) TensorPrimitives.Add(e, p, resid.Slice(n * D, D));
                else e.CopyTo(resid.Slice(n * D, D));
            }
    }

    // differentiates: resid[b,t] = W_E[tokens[b,t]] (+ W_pos[t])
    // dW_E[tok] += dresid[b,t];  dW_pos[t] += Σ_b dresid[b,t]
    public static void Backward(ReadOnlySpan<int> tokens, ReadOnlySpan<float> dResid, Span<float> dWE, Span<float> dWPos,
        int B, int T, int D, bool addPos)
    {
        for (int n = 0; n < B * T; n++)
        {
            var g = dResid.Slice(n * D, D);
            var row = dWE.Slice(tokens[n] * D, D);
            TensorPrimitives.Add(row, g, row);
            if (addPos)
            {
                var prow = dWPos.Slice(n % T * D, D);
                TensorPrimitives.Add(prow, g, prow);
            }
        }
    }
}
