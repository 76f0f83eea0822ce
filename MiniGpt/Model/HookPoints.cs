using MiniGpt.Layers;

namespace MiniGpt.Model;

/// <summary>The shape of the tensor at a hook point, for a pass of B sequences of T positions.</summary>
public enum HookShape
{
    /// <summary>[B, T, d_model]: the residual stream and what is added to it.</summary>
    Residual,
    /// <summary>[B, T, n_heads, d_head]: q, k, v, z.</summary>
    Heads,
    /// <summary>[B, n_heads, T, T]: attention scores and pattern.</summary>
    Attention,
    /// <summary>[B, T, n_heads, d_model]: each head's result.</summary>
    HeadResults,
    /// <summary>[B, T, d_mlp]: the MLP's hidden layer.</summary>
    Mlp,
    /// <summary>[B, T, d_vocab].</summary>
    Logits,
}

/// <summary>The hook points of one block, by index into <see cref="HookPoints.Names"/> (−1 where the config has no such point).</summary>
public sealed class BlockHookPoints
{
    public int ResidPre, Ln1, AttnOut, ResidMid = -1, Ln2 = -1, MlpPre = -1, MlpPost = -1, MlpOut = -1, ResidPost;
    /// <summary>The attention's points, indexed by <see cref="AttentionPoint"/>.</summary>
    public required int[] Attention;
}

/// <summary>
/// Every hook point of a model, in the order a forward pass reaches them, with TransformerLens's names
/// (hook_embed, blocks.0.hook_resid_pre, blocks.0.attn.hook_pattern, …, ln_final.hook_normalized, logits).
/// Built once per model, so a pass finds a point by index and never builds a name.
/// </summary>
public sealed class HookPoints
{
    private readonly List<string> _names = new();
    private readonly List<int> _layers = new();
    private readonly List<HookShape> _shapes = new();
    private readonly Dictionary<string, int> _byName = new(StringComparer.Ordinal);

    public IReadOnlyList<string> Names => _names;
    public int Count => _names.Count;
    public int Embed { get; }
    public int PosEmbed { get; }
    /// <summary>ln_final.hook_normalized, or −1 without LayerNorm.</summary>
    public int LnFinal { get; } = -1;
    public int Logits { get; }
    public BlockHookPoints[] Blocks { get; }

    public HookPoints(ModelConfig c)
    {
        Embed = Add("hook_embed", -1, HookShape.Residual);
        PosEmbed = Add("hook_pos_embed", -1, HookShape.Residual);
        Blocks = new BlockHookPoints[c.NLayers];
        for (int l = 0; l < c.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            int residPre = Add(p + "hook_resid_pre", l, HookShape.Residual);
            int ln1 = c.HasLayerNorm ? Add(p + "ln1.hook_normalized", l, HookShape.Residual) : -1;
            var attn = new int[7];
            attn[(int)AttentionPoint.Q] = Add(p + "attn.hook_q", l, HookShape.Heads);
            attn[(int)AttentionPoint.K] = Add(p + "attn.hook_k", l, HookShape.Heads);
            attn[(int)AttentionPoint.V] = Add(p + "attn.hook_v", l, HookShape.Heads);
            attn[(int)AttentionPoint.Scores] = Add(p + "attn.hook_attn_scores", l, HookShape.Attention);
            attn[(int)AttentionPoint.Pattern] = Add(p + "attn.hook_pattern", l, HookShape.Attention);
            attn[(int)AttentionPoint.Z] = Add(p + "attn.hook_z", l, HookShape.Heads);
            attn[(int)AttentionPoint.Result] = Add(p + "attn.hook_result", l, HookShape.HeadResults);
            var b = new BlockHookPoints { ResidPre = residPre, Ln1 = ln1, Attention = attn, AttnOut = Add(p + "hook_attn_out", l, HookShape.Residual) };
            if (c.HasMlp)
            {
                b.ResidMid = Add(p + "hook_resid_mid", l, HookShape.Residual);
                if (c.HasLayerNorm) b.Ln2 = Add(p + "ln2.hook_normalized", l, HookShape.Residual);
                b.MlpPre = Add(p + "mlp.hook_pre", l, HookShape.Mlp);
                b.MlpPost = Add(p + "mlp.hook_post", l, HookShape.Mlp);
                b.MlpOut = Add(p + "hook_mlp_out", l, HookShape.Residual);
            }
            b.ResidPost = Add(p + "hook_resid_post", l, HookShape.Residual);
            Blocks[l] = b;
        }
        if (c.HasLayerNorm) LnFinal = Add("ln_final.hook_normalized", -1, HookShape.Residual);
        Logits = Add("logits", -1, HookShape.Logits);
    }

    private int Add(string name, int layer, HookShape shape)
    {
        _byName.Add(name, _names.Count);
        _names.Add(name);
        _layers.Add(layer);
        _shapes.Add(shape);
        return _names.Count - 1;
    }

    /// <summary>The point's index, or −1 if the model has no point of that name.</summary>
    public int IndexOf(string name) => _byName.TryGetValue(name, out int i) ? i : -1;

    /// <summary>The block a point belongs to, −1 outside the blocks.</summary>
    public int LayerOf(int point) => _layers[point];

    public HookShape ShapeKindOf(int point) => _shapes[point];

    /// <summary>The tensor shape at a point for a pass of B sequences of T positions.</summary>
    public static int[] Shape(HookShape kind, ModelConfig c, int B, int T) => kind switch
    {
        HookShape.Residual => [B, T, c.DModel],
        HookShape.Heads => [B, T, c.NHeads, c.DHead],
        HookShape.Attention => [B, c.NHeads, T, T],
        HookShape.HeadResults => [B, T, c.NHeads, c.DModel],
        HookShape.Mlp => [B, T, c.DMlp],
        _ => [B, T, c.DVocab],
    };
}
