using MiniGpt.Circuits;
using MiniGpt.Model;
using MiniGpt.Patching;

namespace MiniGpt.Train.Report;

/// <summary>
/// The patching that the circuits report of an induction-task checkpoint includes: the induction pairs, in
/// the noising direction (corrupted activations into the clean run, like the report's ablations: a cell of
/// 1 is a site that breaks the repeat alone), on a grid set and batch small enough to add about a second to
/// circuits (z by position and attn_out, the slowest grids, are left to the patch verb).
/// </summary>
public static class PatchInCircuits
{
    public const int Batch = 8;
    public const ulong Seed = 1;

    public static PatchPrompts Prompts(ModelConfig c) =>
        PatchPrompts.Induction(c.DVocab, Batch, HeadProbe.HalfFor(c.NCtx), Seed);

    public static IReadOnlyList<PatchSpec> Specs(ModelConfig c) =>
        PatchSpec.Standard(c).Where(s => s.Axes != PatchAxes.LayerHeadPos && s.Site != PatchSite.AttnOut).ToList();

    /// <summary>Whether circuits patches this checkpoint: an induction-task model (no tokenizer) with blocks and room for two halves of two tokens.</summary>
    public static bool Applies(ModelConfig c, bool hasTokenizer) => !hasTokenizer && c.NLayers > 0 && c.NCtx >= 4;
}
