using System.Numerics.Tensors;
using MiniGpt.Tensors;

namespace MiniGpt.Layers;

/// <summary>
/// Token and positional embedding: hook_embed and hook_pos_embed. The model adds them into the first
/// residual stream itself (or, with shortformer positions, keeps pos for the queries and keys), so a hook
/// that replaces either one changes what follows.
/// </summary>
public static class Embedding
{
    // tokens [B,T] → embed [B,T,D] = W_E[tokens], pos [B,T,D] = W_pos[t]
    public static void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<float> wE, ReadOnlySpan<float> wPos,
        Span<float> embed, Span<float> pos, int B, int T, int D)
    {
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
            {
                int n = b * T + t;
                wE.Slice(tokens[n] * D, D).CopyTo(embed.Slice(n * D, D));
                wPos.Slice(t * D, D).CopyTo(pos.Slice(n * D, D));
            }
    }

    // differentiates: embed[b,t] = W_E[tokens[b,t]],  pos[b,t] = W_pos[t]
    //   dW_E[tok] += dembed[b,t];  dW_pos[t] += Σ_b dpos[b,t]   (dPos empty: no positional gradient here)
    public static void Backward(ReadOnlySpan<int> tokens, ReadOnlySpan<float> dEmbed, ReadOnlySpan<float> dPos, Span<float> dWE, Span<float> dWPos,
        int B, int T, int D)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        DebugViews.In(ref views, "dembed", dEmbed, B, T, D);
        DebugViews.In(ref views, "dpos", dPos, B, T, D);
        for (int n = 0; n < B * T; n++)
        {
            var row = dWE.Slice(tokens[n] * D, D);
            TensorPrimitives.Add(row, dEmbed.Slice(n * D, D), row);
            if (dPos.IsEmpty) continue;
            var prow = dWPos.Slice(n % T * D, D);
            TensorPrimitives.Add(prow, dPos.Slice(n * D, D), prow);
        }
        DebugViews.Out(ref views, "dW_E", dWE, dWE.Length / D, D);
        DebugViews.Out(ref views, "dW_pos", dWPos, dWPos.Length / D, D);
    }
}
