using MiniGpt.Model;

namespace MiniGpt.Patching;

/// <summary>Where an activation is patched: the hook point of each block it names.</summary>
public enum PatchSite
{
    /// <summary>blocks.{l}.hook_resid_pre [B, T, d_model]</summary>
    ResidPre,
    /// <summary>blocks.{l}.hook_attn_out [B, T, d_model]</summary>
    AttnOut,
    /// <summary>blocks.{l}.hook_mlp_out [B, T, d_model] (models with MLPs)</summary>
    MlpOut,
    /// <summary>blocks.{l}.attn.hook_z [B, T, n_heads, d_head]: each head's output before W_O</summary>
    Z,
    /// <summary>blocks.{l}.attn.hook_q [B, T, n_heads, d_head]</summary>
    Q,
    /// <summary>blocks.{l}.attn.hook_k [B, T, n_heads, d_head]</summary>
    K,
    /// <summary>blocks.{l}.attn.hook_v [B, T, n_heads, d_head]</summary>
    V,
    /// <summary>blocks.{l}.attn.hook_pattern [B, n_heads, T, T]</summary>
    Pattern,
    /// <summary>blocks.{l}.hook_resid_post [B, T, d_model]: resid_pre of the next block, and for the last block the stream the unembedding reads</summary>
    ResidPost,
}

/// <summary>How a site is cut into the cells of a grid: each cell is one patch.</summary>
public enum PatchAxes
{
    /// <summary>[layer, pos]: the residual sites, every d_model value at one position.</summary>
    LayerPos,
    /// <summary>[layer, head]: one head at every position.</summary>
    LayerHead,
    /// <summary>[layer, head, pos]: one head at one position (its query position for q and z, key position for k and v).</summary>
    LayerHeadPos,
}

/// <summary>A site and how it is cut: one grid of patching results.</summary>
public readonly record struct PatchSpec(PatchSite Site, PatchAxes Axes)
{
    /// <summary>The grids the issue's patching runs by default, in TransformerLens's order (patching.py's get_act_patch_* family).</summary>
    public static IReadOnlyList<PatchSpec> Standard(ModelConfig c)
    {
        var list = new List<PatchSpec> { new(PatchSite.ResidPre, PatchAxes.LayerPos), new(PatchSite.AttnOut, PatchAxes.LayerPos) };
        if (c.HasMlp) list.Add(new(PatchSite.MlpOut, PatchAxes.LayerPos));
        list.Add(new(PatchSite.Z, PatchAxes.LayerHead));
        list.Add(new(PatchSite.Z, PatchAxes.LayerHeadPos));
        foreach (var s in new[] { PatchSite.Q, PatchSite.K, PatchSite.V, PatchSite.Pattern }) list.Add(new(s, PatchAxes.LayerHead));
        return list;
    }

    /// <summary>snake_case, as in patch.json and on the command line: resid_pre, attn_out, mlp_out, z, q, k, v, pattern.</summary>
    public static string SiteName(PatchSite s) => s switch
    {
        PatchSite.ResidPre => "resid_pre", PatchSite.AttnOut => "attn_out", PatchSite.MlpOut => "mlp_out", PatchSite.Z => "z",
        PatchSite.Q => "q", PatchSite.K => "k", PatchSite.V => "v", PatchSite.Pattern => "pattern", _ => "resid_post",
    };

    /// <summary>The site of a name, or a UserError listing them.</summary>
    public static PatchSite ParseSite(string name) =>
        Enum.GetValues<PatchSite>().FirstOrDefault(s => SiteName(s) == name, (PatchSite)(-1)) is var s && (int)s >= 0 ? s
            : throw new UserError($"unknown patching site '{name}': use resid_pre, attn_out, mlp_out, resid_post, z, q, k, v or pattern");

    /// <summary>The grid's name in patch.json: "resid_pre", "z", "z_by_pos", …</summary>
    public string Name => SiteName(Site) + (Axes == PatchAxes.LayerHeadPos ? "_by_pos" : "");

    /// <summary>The hook point's name within block l.</summary>
    public string HookName(int layer) => $"blocks.{layer}." + Site switch
    {
        PatchSite.ResidPre => "hook_resid_pre", PatchSite.AttnOut => "hook_attn_out", PatchSite.MlpOut => "hook_mlp_out",
        PatchSite.Z => "attn.hook_z", PatchSite.Q => "attn.hook_q", PatchSite.K => "attn.hook_k", PatchSite.V => "attn.hook_v",
        PatchSite.Pattern => "attn.hook_pattern", _ => "hook_resid_post",
    };

    public bool IsResidual => IsResidualSite(Site);

    public static bool IsResidualSite(PatchSite s) => s is PatchSite.ResidPre or PatchSite.AttnOut or PatchSite.MlpOut or PatchSite.ResidPost;

    /// <summary>The spec, checked against the model: a residual site is cut by position, a head site by head (and position, except pattern).</summary>
    public PatchSpec Validate(ModelConfig c)
    {
        if (c.NLayers == 0) throw new UserError("a zero-layer model has no blocks to patch");
        if (Site == PatchSite.MlpOut && !c.HasMlp) throw new UserError("mlp_out: the model is attention-only and has no MLP to patch");
        if (IsResidual != (Axes == PatchAxes.LayerPos))
            throw new UserError($"{SiteName(Site)} is patched by {(IsResidual ? "layer × position" : "layer × head (× position)")}, not {Axes}");
        if (Site == PatchSite.Pattern && Axes == PatchAxes.LayerHeadPos)
            throw new UserError("pattern is patched by layer × head (the whole T×T pattern of a head)");
        return this;
    }

    /// <summary>The grid's axes and their lengths for a model and prompt length.</summary>
    public (string[] Axes, int[] Shape) Dimensions(ModelConfig c, int T) => Axes switch
    {
        PatchAxes.LayerPos => (["layer", "pos"], [c.NLayers, T]),
        PatchAxes.LayerHead => (["layer", "head"], [c.NLayers, c.NHeads]),
        _ => (["layer", "head", "pos"], [c.NLayers, c.NHeads, T]),
    };
}
