using MiniGpt.Circuits;

namespace MiniGpt.Patching;

/// <summary>What a metric reads at one position of one prompt: the logit of Answer against Wrong (the next token after Position).</summary>
public readonly record struct PatchTarget(int Position, int Answer, int Wrong);

/// <summary>
/// B clean/corrupted prompt pairs run as one batch [B, T], with the targets each row's metric reads. A clean
/// prompt and its corrupted one have the same length (patching copies position t of one into position t of the
/// other); pairs shorter than the longest are right-padded to T (<see cref="Create"/>), and Lengths keeps each
/// pair's own length, so what reads every position (the logit lens's sequence loss, position labels) can skip the padding.
/// </summary>
public sealed class PatchPrompts
{
    private PatchPrompts(int[] clean, int[] corrupted, PatchTarget[][] targets, int[] lengths, int batch, int seqLen, string description)
    {
        Clean = clean; Corrupted = corrupted; Targets = targets; Lengths = lengths; Batch = batch; SeqLen = seqLen; Description = description;
    }

    /// <summary>B, the number of pairs.</summary>
    public int Batch { get; }
    /// <summary>T, the tokens of every row of the batch: the longest pair's length.</summary>
    public int SeqLen { get; }
    /// <summary>Per pair, its own number of tokens before padding (≤ T): positions Lengths[b] … T−1 of row b are padding.</summary>
    public int[] Lengths { get; }
    /// <summary>The clean prompts [B, T], row-major.</summary>
    public int[] Clean { get; }
    /// <summary>The corrupted prompts [B, T], row-major.</summary>
    public int[] Corrupted { get; }
    /// <summary>Per row, the positions the metric reads and their answer and wrong tokens.</summary>
    public PatchTarget[][] Targets { get; }
    /// <summary>Where the prompts came from, for reports ("induction: 16 pairs of 2×16 tokens").</summary>
    public string Description { get; }

    public int TargetCount => Targets.Sum(t => t.Length);

    /// <summary>
    /// The pairs, checked: equal lengths, at least one target per row, positions and tokens in range (UserError otherwise).
    /// With padToken ≥ 0, pairs shorter than the longest are right-padded with it instead of refused: attention is causal,
    /// so tokens after a pair's last one change none of its targets (each target must still lie inside its own pair), and
    /// a position cell that falls in a pair's padding patches nothing that pair reads (it counts as 0 for that pair).
    /// </summary>
    public static PatchPrompts Create(IReadOnlyList<int[]> clean, IReadOnlyList<int[]> corrupted, IReadOnlyList<PatchTarget[]> targets,
        int vocab, int nCtx, string description, int padToken = -1)
    {
        int B = clean.Count;
        if (B == 0) throw new UserError("patching needs at least one clean/corrupted pair");
        if (corrupted.Count != B || targets.Count != B)
            throw new UserError($"patching got {B} clean prompts, {corrupted.Count} corrupted and {targets.Count} target lists: give one of each per pair");
        if (padToken >= vocab) throw new UserError($"the padding token {padToken} is outside the vocabulary [0, {vocab})");
        var lengths = clean.Select(x => x.Length).ToArray();
        // each target inside its own pair's tokens, checked before any padding could make room for it
        for (int b = 0; b < B; b++)
            foreach (var t in targets[b])
                if (t.Position < 0 || t.Position >= clean[b].Length)
                    throw new UserError($"a target of pair {b} reads position {t.Position}, outside its {clean[b].Length} tokens");
        if (padToken >= 0)
        {
            int longest = clean.Max(c => c.Length);
            int[] Pad(int[] p) => p.Length >= longest ? p : [.. p, .. Enumerable.Repeat(padToken, longest - p.Length)];
            var paddedClean = new List<int[]>(B);
            var paddedCorrupted = new List<int[]>(B);
            for (int b = 0; b < B; b++)
            {
                bool same = clean[b].Length == corrupted[b].Length; // a mismatched pair is refused below, unpadded
                paddedClean.Add(same ? Pad(clean[b]) : clean[b]);
                paddedCorrupted.Add(same ? Pad(corrupted[b]) : corrupted[b]);
            }
            clean = paddedClean;
            corrupted = paddedCorrupted;
        }
        int T = clean[0].Length;
        for (int b = 0; b < B; b++)
        {
            string which = B == 1 ? "" : $" of pair {b}";
            if (clean[b].Length != corrupted[b].Length)
                throw new UserError($"the clean prompt{which} is {clean[b].Length} tokens and the corrupted one {corrupted[b].Length}: " +
                                    "patching copies activations position by position, so make both the same number of tokens");
            if (clean[b].Length != T)
                throw new UserError($"pair {b} is {clean[b].Length} tokens but pair 0 is {T}: the pairs run as one batch, so give them one length");
            if (targets[b].Length == 0) throw new UserError($"pair {b} has no answer to measure: give an answer and a wrong token");
            foreach (var t in targets[b])
                if ((uint)t.Answer >= (uint)vocab || (uint)t.Wrong >= (uint)vocab)
                    throw new UserError($"a target of pair {b} names token {((uint)t.Answer >= (uint)vocab ? t.Answer : t.Wrong)}, outside the vocabulary [0, {vocab})");
        }
        if (T < 1 || T > nCtx) throw new UserError($"the prompts are {T} tokens; the model reads 1 to n_ctx = {nCtx}: shorten them");
        var c = new int[B * T];
        var x = new int[B * T];
        for (int b = 0; b < B; b++)
        {
            clean[b].CopyTo(c, b * T);
            corrupted[b].CopyTo(x, b * T);
        }
        foreach (int id in c.Concat(x))
            if ((uint)id >= (uint)vocab) throw new UserError($"a prompt holds token {id}, outside the vocabulary [0, {vocab})");
        return new PatchPrompts(c, x, targets.Select(t => t.ToArray()).ToArray(), lengths, B, T, description);
    }

    /// <summary>
    /// The noising experiment as a denoising one: the corrupted prompts patched with activations of the clean run become
    /// the clean prompts patched with the corrupted run's, same targets. Grids then read 0 = the clean run, 1 = the
    /// corrupted one: the share of the damage one site carries (TransformerLens's and ARENA's "noising").
    /// </summary>
    public PatchPrompts Swapped() => new(Corrupted, Clean, Targets, Lengths, Batch, SeqLen, "noising: " + Description);

    /// <summary>Whether position t of pair b is padding (after the pair's own tokens).</summary>
    public bool IsPadding(int b, int t) => t >= Lengths[b];

    /// <summary>One pair whose metric reads the last position: answer against wrong as the next token.</summary>
    public static PatchPrompts Single(int[] clean, int[] corrupted, int answer, int wrong, int vocab, int nCtx, string description) =>
        Create([clean], [corrupted], [[new PatchTarget(clean.Length - 1, answer, wrong)]], vocab, nCtx, description);

    /// <summary>
    /// The induction task's pairs: clean = L random tokens then the same L again (<see cref="HeadProbe.RepeatedRandomTokens"/>);
    /// corrupted = L other random tokens, then the clean second half, so the tokens of the second half are the same
    /// but nothing before them repeats. The metric reads positions L … 2L−2 of the second half: at position L+i (token x_i)
    /// the answer is x_{i+1}, which only an induction circuit can predict, against y_{i+1}, the corrupted first half's token there.
    /// </summary>
    public static PatchPrompts Induction(int vocab, int batch, int half, ulong seed)
    {
        if (half < 2) throw new UserError($"the induction pairs need a half of at least 2 tokens (n_ctx ≥ 4), got {half}");
        int L = half, T = 2 * L;
        var clean = HeadProbe.RepeatedRandomTokens(vocab, batch, L, seed);
        // the corrupted first halves: fresh sequences from another seed, drawn avoiding the clean row's tokens where the vocabulary allows
        var other = HeadProbe.RepeatedRandomTokens(vocab, batch, L, seed ^ 0x9E3779B97F4A7C15UL);
        var cl = new List<int[]>();
        var co = new List<int[]>();
        var tg = new List<PatchTarget[]>();
        var rng = new Rng(seed + 1);
        for (int b = 0; b < batch; b++)
        {
            var x = clean.AsSpan(b * T, T).ToArray();
            var y = new int[T];
            var used = new HashSet<int>(x.AsSpan(0, L).ToArray());
            // With vocab ≥ 2L the clean half holds L distinct tokens, leaving vocab − L − i ≥ L − i ≥ 1 unused ones when y_i is
            // drawn, so y_i can always avoid every x_j and every earlier y_j: the corrupted run then holds no repeat, and no
            // target's wrong token y_{i+1} equals its answer x_{i+1}. A token of `other` that collides is replaced by a uniform
            // draw from the unused tokens: a few rejection draws first (uniform over the unused set, and the draws earlier
            // versions made, so the pairs of a roomy vocabulary stay as they were), then, when the unused tokens are too few
            // for rejection to find one quickly (vocab just ≥ 2L), a direct draw from their list. Deterministic for the seed.
            for (int i = 0; i < L; i++)
            {
                int t = other[b * T + i];
                if (vocab >= 2 * L && used.Contains(t))
                {
                    for (int tries = 0; used.Contains(t) && tries < 64; tries++) t = rng.NextInt(vocab);
                    if (used.Contains(t))
                    {
                        var unused = Enumerable.Range(0, vocab).Where(v => !used.Contains(v)).ToArray();
                        t = unused[rng.NextInt(unused.Length)];
                    }
                }
                y[i] = t;
                used.Add(t);
            }
            x.AsSpan(L).CopyTo(y.AsSpan(L));
            var targets = new PatchTarget[L - 1];
            for (int i = 0; i < L - 1; i++) targets[i] = new PatchTarget(L + i, x[i + 1], y[i + 1]);
            cl.Add(x); co.Add(y); tg.Add(targets);
        }
        return Create(cl, co, tg, vocab, T, $"induction: {batch} pairs of 2×{L} random tokens (corrupted: another first half)");
    }
}
