using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>
/// Behavioural scores of every attention head, [layer][head], measured on repeated random sequences
/// (L random tokens, then the same L tokens again; 2L ≤ n_ctx), the probe TransformerLens's induction
/// tutorials and head detector use (transformer_lens/head_detector.py; "Finding induction heads" in the
/// TransformerLens main demo / ARENA 1.2). MiniGpt has no BOS token, so nothing is excluded for one.
///
/// Attention scores (each the attention mass a head puts on a target key, averaged over the query
/// positions that have such a target, then over the batch; 1 = all attention on the target):
/// - PreviousToken: A[i, i−1] over queries i = 1 … 2L−1 (TL's previous_token_head pattern).
/// - DuplicateToken: Σ_{j&lt;i, tok_j = tok_i} A[i, j] over queries i whose token occurred before (TL's
///   duplicate_token_head pattern: attention to earlier copies of the current token). The first half is
///   drawn without replacement when d_vocab ≥ L, so this is exactly the attention from i to i−L.
/// - Induction: A[i, i−L+1] over queries i = L … 2L−1, the "induction stripe" of the TL tutorials
///   (the token after the earlier copy of the current token, found by offset).
/// - PrefixMatching: Σ_{j&lt;i, tok_j = tok_i} A[i, j+1] over queries whose token occurred before: TL's
///   induction_head detection pattern (the duplicate pattern shifted one key to the right), which is
///   Olsson et al. 2022's "prefix matching" (attend to the token that followed an earlier occurrence
///   of the current token), found by token identity. Equal to Induction when the first half has no
///   repeats (d_vocab ≥ L); it differs when it does.
///   TL's 'mul' error measure divides the matched attention by the sum of the whole pattern (all
///   query rows), so a perfect previous-token head scores (T−1)/T there and a perfect duplicate head
///   ½ on a repeated sequence; here only rows that have a target count, so a perfect head scores 1.
/// - Copying: how often the head, when it attends to a position, raises that position's token above every
///   other token: the top-1 copying check of the OV circuit (the ARENA/TransformerLens tutorials' top_1_acc of
///   the full OV circuit W_E·W_OV·W_U; the behaviour Elhage et al. 2021 call copying and Olsson et al. 2022
///   measure for induction heads), taken over the actually attended positions instead of bare token
///   embeddings. For a source position j with value v_j (hook_v, the head's actual input there), the
///   head's direct logit effect when it attends fully to j is ℓ_j = r̃_j·W_U with r_j = v_j·W_O[h] and
///   r̃_j = ln_final.w ⊙ (r_j − mean(r_j)) for a LayerNorm model (LN's centring and gain; its 1/σ is a
///   positive factor, which leaves the ranking unchanged), r_j otherwise. c_j = 1 if ℓ_j[tok_j] &gt; ℓ_j[t]
///   for every t ≠ tok_j, else 0, and the score is Σ_{b,j} w_{b,j}·c_{b,j} / Σ w with w_{b,j} = Σ_{i ≥ L} A[b,i,j]
///   the attention position j receives from the queries of the repeated half: the fraction of the head's
///   attention there that lands on tokens it copies. (Queries of the first half are left out: there is
///   nothing to copy yet, and a trained induction head parks that attention on an early position, which
///   took its score from 0.93 to 0.48 on the trained default model.) 1 for a head that copies everything
///   it attends to, 0 for one that never does (≈ 1/d_vocab by chance). (A share-of-positive-logits version, ReLU(ℓ̄_j[tok_j]) / Σ_v ReLU(ℓ̄_j[v]), was tried and
///   rejected: on the trained induction model it gave ≈ 0.1 for induction heads whose attended token is
///   the top logit 93–96 % of the time, because many tokens get a small positive share.)
/// Labels: the role with the highest score among those at or above its threshold
/// (<see cref="PreviousTokenThreshold"/> etc., all 0.4, the threshold the detector exercises of the ARENA
/// TransformerLens tutorials use), else "". On the default trained model (README) this names L0H2 and L0H3
/// previous-token (0.63, 0.68) and L1H0–L1H2 induction (0.95–0.97); L1H3 scores 0.39 and stays unlabelled.
/// </summary>
public sealed record HeadScores(int Layers, int Heads, double[][] PreviousToken, double[][] DuplicateToken, double[][] Induction,
    double[][] PrefixMatching, double[][] Copying, string[][] Labels)
{
    public const double PreviousTokenThreshold = 0.4;
    public const double DuplicateTokenThreshold = 0.4;
    public const double InductionThreshold = 0.4;

    /// <summary>
    /// Runs <paramref name="batch"/> repeated random sequences of 2·seqLen tokens (seqLen 0: n_ctx/2
    /// rounded down) through the model with a cache of hook_pattern and hook_v, and scores every head.
    /// Forward hooks already registered on the model stay active (so a test can force a pattern).
    /// </summary>
    public static HeadScores Compute(GptModel model, int batch = 16, int seqLen = 0, ulong seed = 1)
    {
        var c = model.Config;
        int L = seqLen == 0 ? c.NCtx / 2 : seqLen;
        if (batch < 1) throw new ArgumentException($"batch must be ≥ 1, got {batch}");
        if (L < 2 || 2 * L > c.NCtx)
            throw new ArgumentException($"seqLen {L} must be in [2, n_ctx/2 = {c.NCtx / 2}] so that the repeated sequence fits n_ctx={c.NCtx}");
        int nL = c.NLayers, H = c.NHeads, T = 2 * L, B = batch;
        var tokens = RepeatedRandomTokens(c.DVocab, B, L, seed);
        var prev = Jagged(nL, H); var dup = Jagged(nL, H); var ind = Jagged(nL, H); var pre = Jagged(nL, H); var copy = Jagged(nL, H);
        var labels = new string[nL][];
        for (int l = 0; l < nL; l++) labels[l] = new string[H];
        if (nL == 0) return new HeadScores(0, H, prev, dup, ind, pre, copy, labels);

        var cache = model.RunWithCache(tokens, B, T, n => n.EndsWith(".attn.hook_pattern", StringComparison.Ordinal) || n.EndsWith(".attn.hook_v", StringComparison.Ordinal));
        var copyLogits = new CopyingProbe(model);
        for (int l = 0; l < nL; l++)
        {
            var pattern = cache[$"blocks.{l}.attn.hook_pattern"].Span; // [B, H, T, T]
            var v = cache[$"blocks.{l}.attn.hook_v"].Span;             // [B, T, H, dh]
            for (int h = 0; h < H; h++)
            {
                double sPrev = 0, sDup = 0, sInd = 0, sPre = 0; long nPrev = 0, nDup = 0, nInd = 0;
                for (int b = 0; b < B; b++)
                {
                    var tok = tokens.AsSpan(b * T, T);
                    var A = pattern.Slice((b * H + h) * T * T, T * T);
                    for (int i = 1; i < T; i++) { sPrev += A[i * T + i - 1]; nPrev++; }
                    for (int i = L; i < T; i++) { sInd += A[i * T + i - L + 1]; nInd++; }
                    for (int i = 1; i < T; i++)
                    {
                        bool seen = false; double d = 0, p = 0;
                        for (int j = 0; j < i; j++)
                            if (tok[j] == tok[i]) { seen = true; d += A[i * T + j]; p += A[i * T + j + 1]; }
                        if (seen) { sDup += d; sPre += p; nDup++; }
                    }
                }
                prev[l][h] = sPrev / nPrev;
                ind[l][h] = sInd / nInd;
                dup[l][h] = nDup == 0 ? 0 : sDup / nDup;
                pre[l][h] = nDup == 0 ? 0 : sPre / nDup;
                copy[l][h] = copyLogits.Score(l, h, pattern, v, tokens, B, T);
                labels[l][h] = Label(prev[l][h], dup[l][h], ind[l][h]);
            }
        }
        return new HeadScores(nL, H, prev, dup, ind, pre, copy, labels);
    }

    /// <summary>The role with the highest score among those at or above their thresholds, or "".</summary>
    public static string Label(double previousToken, double duplicateToken, double induction)
    {
        string best = ""; double bestScore = double.NegativeInfinity;
        void Consider(string name, double s, double threshold) { if (s >= threshold && s > bestScore) { best = name; bestScore = s; } }
        Consider("previous-token", previousToken, PreviousTokenThreshold);
        Consider("duplicate-token", duplicateToken, DuplicateTokenThreshold);
        Consider("induction", induction, InductionThreshold);
        return best;
    }

    /// <summary>
    /// B sequences [B, 2L]: L uniform random tokens (distinct, by a partial Fisher–Yates shuffle, when
    /// vocab ≥ L, so the second half is the only repetition; with replacement otherwise), then the same L again.
    /// </summary>
    public static int[] RepeatedRandomTokens(int vocab, int batch, int half, ulong seed)
    {
        var rng = new Rng(seed);
        int L = half, T = 2 * L;
        var tokens = new int[batch * T];
        var perm = vocab >= L ? Enumerable.Range(0, vocab).ToArray() : null;
        for (int b = 0; b < batch; b++)
        {
            var row = tokens.AsSpan(b * T, T);
            for (int i = 0; i < L; i++)
            {
                if (perm != null)
                {
                    int j = i + rng.NextInt(vocab - i);
                    (perm[i], perm[j]) = (perm[j], perm[i]);
                    row[i] = perm[i];
                }
                else row[i] = rng.NextInt(vocab);
            }
            row[..L].CopyTo(row[L..]);
        }
        return tokens;
    }

    private static double[][] Jagged(int n, int m)
    {
        var a = new double[n][];
        for (int i = 0; i < n; i++) a[i] = new double[m];
        return a;
    }

    /// <summary>The copying score defined in the summary of <see cref="HeadScores"/>.</summary>
    private sealed class CopyingProbe(GptModel model)
    {
        private readonly ModelConfig _c = model.Config;
        private readonly float[] _wu = model.Params["unembed.W_U"].Span.ToArray();
        private readonly float[]? _lnw = model.Params.TryGet("ln_final.w", out var w) ? w.Span.ToArray() : null;
        private readonly GptModel _m = model;

        public double Score(int l, int h, ReadOnlySpan<float> pattern, ReadOnlySpan<float> v, int[] tokens, int B, int T)
        {
            int D = _c.DModel, H = _c.NHeads, dh = _c.DHead, V = _c.DVocab;
            var wo = _m.Params[$"blocks.{l}.attn.W_O"].Span.Slice(h * dh * D, dh * D); // [dh, D]
            var r = new double[D];
            var logits = new double[V];
            double num = 0, den = 0;
            for (int b = 0; b < B; b++)
                for (int j = 0; j < T; j++)
                {
                    double wj = 0; // attention that position j receives from the queries of the repeated half
                    for (int i = Math.Max(j, T / 2); i < T; i++) wj += pattern[((b * H + h) * T + i) * T + j];
                    if (wj == 0) continue;
                    var vj = v.Slice(((b * T + j) * H + h) * dh, dh);
                    Array.Clear(r);
                    for (int e = 0; e < dh; e++)
                    {
                        double ve = vj[e];
                        var row = wo.Slice(e * D, D);
                        for (int d = 0; d < D; d++) r[d] += ve * row[d];
                    }
                    if (_c.HasLayerNorm)
                    {
                        double mean = 0;
                        for (int d = 0; d < D; d++) mean += r[d];
                        mean /= D;
                        for (int d = 0; d < D; d++) r[d] = (r[d] - mean) * (_lnw?[d] ?? 1.0);
                    }
                    Array.Clear(logits);
                    for (int d = 0; d < D; d++)
                    {
                        double rd = r[d];
                        var urow = _wu.AsSpan(d * V, V);
                        for (int t = 0; t < V; t++) logits[t] += rd * urow[t];
                    }
                    int tok = tokens[b * T + j];
                    double cj = 1;
                    for (int t = 0; t < V; t++)
                        if (t != tok && logits[t] >= logits[tok]) { cj = 0; break; }
                    num += wj * cj;
                    den += wj;
                }
            return den > 0 ? num / den : 0;
        }
    }
}
