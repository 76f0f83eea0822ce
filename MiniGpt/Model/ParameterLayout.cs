using MiniGpt.Tensors;

namespace MiniGpt.Model;

/// <summary>
/// Every parameter's TransformerLens name and shape, in one order. The same layout carves the
/// parameter, gradient and Adam-moment buffers, so a name means the same slice in each.
/// </summary>
public static class ParameterLayout
{
    public static Arena Declare(ModelConfig c)
    {
        var a = new Arena();
        int D = c.DModel, H = c.NHeads, dh = c.DHead;
        a.Add("embed.W_E", c.DVocab, D);
        a.Add("pos_embed.W_pos", c.NCtx, D);
        for (int l = 0; l < c.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            if (c.HasLayerNormParams) { a.Add(p + "ln1.w", D); a.Add(p + "ln1.b", D); }
            a.Add(p + "attn.W_Q", H, D, dh);
            a.Add(p + "attn.W_K", H, D, dh);
            a.Add(p + "attn.W_V", H, D, dh);
            a.Add(p + "attn.W_O", H, dh, D);
            a.Add(p + "attn.b_Q", H, dh);
            a.Add(p + "attn.b_K", H, dh);
            a.Add(p + "attn.b_V", H, dh);
            a.Add(p + "attn.b_O", D);
            if (c.HasMlp)
            {
                if (c.HasLayerNormParams) { a.Add(p + "ln2.w", D); a.Add(p + "ln2.b", D); }
                a.Add(p + "mlp.W_in", D, c.DMlp);
                a.Add(p + "mlp.b_in", c.DMlp);
                a.Add(p + "mlp.W_out", c.DMlp, D);
                a.Add(p + "mlp.b_out", D);
            }
        }
        if (c.HasLayerNormParams) { a.Add("ln_final.w", D); a.Add("ln_final.b", D); }
        a.Add("unembed.W_U", D, c.DVocab);
        a.Add("unembed.b_U", c.DVocab);
        return a;
    }

    /// <summary>
    /// AdamW decays the weight matrices (W_E, W_pos, W_Q/K/V/O, W_in/W_out, W_U: the W_* tensors) and not the
    /// biases (b_*, including the per-head [n_heads, d_head] b_Q/b_K/b_V) or LayerNorm gains, as nanoGPT and
    /// GPT-2 do: decay pulls weights to 0, which for a gain means "switch off".
    /// </summary>
    public static bool Decays(Tensor t) => Leaf(t.Name).StartsWith("W_", StringComparison.Ordinal);

    private static string Leaf(string name) => name[(name.LastIndexOf('.') + 1)..];

    /// <summary>TransformerLens's init: W_* ~ N(0, init_range²), biases 0, LayerNorm gains 1.</summary>
    public static void Initialise(Arena p, ModelConfig c, ref Rng rng)
    {
        double std = c.EffectiveInitRange;
        foreach (var t in p.Tensors)
        {
            string leaf = Leaf(t.Name);
            var s = t.Span;
            if (leaf.StartsWith("W_", StringComparison.Ordinal))
                for (int i = 0; i < s.Length; i++) s[i] = (float)(rng.NextNormal() * std);
            else if (leaf == "w") s.Fill(1f);
            else s.Clear();
        }
    }
}
