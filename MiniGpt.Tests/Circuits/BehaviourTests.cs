using MiniGpt.Circuits;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests.Circuits;

/// <summary>Behaviour analysis and geometry (MiniGpt/Circuits: HeadScores, InContext, PathExpansion, SkipTrigrams, BigramKl, Geometry), each against a direct computation.</summary>
public class BehaviourTests
{
    private static void Near(double expected, double actual, double tol = 1e-5, string what = "") =>
        Assert.True(Math.Abs(expected - actual) <= tol * (1 + Math.Abs(expected)), $"{what}: expected {expected:G9}, got {actual:G9}");

    private static GptModel Model(int layers, string? norm = null, string pos = "standard", int vocab = 13, int dModel = 16, int heads = 2,
        int dHead = 8, int nCtx = 12, bool attnOnly = true, ulong seed = 3)
    {
        var m = GptModel.Create(new ModelConfig
        {
            NLayers = layers, DModel = dModel, NHeads = heads, DHead = dHead, DMlp = 24, NCtx = nCtx, DVocab = vocab, AttnOnly = attnOnly,
            NormalizationType = norm, PositionalEmbeddingType = pos, InitRange = 0.5,
        }, seed);
        var rng = new Rng(seed + 100);
        foreach (var t in m.Params.Tensors)
            if (!t.Name.Contains(".W_")) for (int i = 0; i < t.Length; i++) t[i] += (float)(0.1 * rng.NextNormal()); // biases and LN params ≠ defaults
        return m;
    }

    private static int[] Tokens(int n, int vocab, ulong seed)
    {
        var rng = new Rng(seed);
        var x = new int[n];
        for (int i = 0; i < n; i++) x[i] = rng.NextInt(vocab);
        return x;
    }

    private static void SetIdentity(Tensor t, int rows, int cols, int offset = 0, float scale = 1)
    {
        var s = t.Span.Slice(offset, rows * cols);
        s.Clear();
        for (int i = 0; i < Math.Min(rows, cols); i++) s[i * cols + i] = scale;
    }

    // replaces head h's pattern [B,H,T,T] by one-hot attention to target(i) (must be ≤ i)
    private static IDisposable Force(GptModel m, int layer, int head, Func<int, int, int> target) =>
        m.Hooks.AddForward($"blocks.{layer}.attn.hook_pattern", (t, p) =>
        {
            int B = p.Batch, T = p.SeqLen, H = m.Config.NHeads;
            var s = t.Span;
            for (int b = 0; b < B; b++)
                for (int i = 0; i < T; i++)
                {
                    var row = s.Slice(((b * H + head) * T + i) * T, T);
                    row.Clear();
                    row[target(i, T)] = 1;
                }
        });

    private static Func<string, double> Values(double prev, double dup, double ind) =>
        name => name switch { "previous_token" => prev, "duplicate_token" => dup, "induction" => ind, _ => double.NaN };

    private static string Label(double prev, double dup, double ind) => HeadScoreSet.Default.Label(Values(prev, dup, ind));

    [Fact]
    public void HeadScoresOfForcedPatternsAreOneAndLabelled()
    {
        var m = Model(2, vocab: 20, nCtx: 16);
        const int L = 8;
        using var prev = Force(m, 0, 0, (i, _) => Math.Max(i - 1, 0));
        using var dup = Force(m, 1, 0, (i, _) => i >= L ? i - L : i);
        using var ind = Force(m, 1, 1, (i, _) => i >= L ? i - L + 1 : i);
        var s = HeadScores.Compute(m, batch: 4, seqLen: 0, seed: 5);
        Assert.Equal(2, s.Layers); Assert.Equal(2, s.Heads);
        Near(1, s["previous_token"][0][0], 1e-6, "previous-token L0H0");
        Near(0, s["induction"][0][0], 1e-6, "induction L0H0");
        Assert.Equal("previous-token", s.Labels[0][0]);
        Near(1, s["duplicate_token"][1][0], 1e-6, "duplicate L1H0");
        Near(0, s["previous_token"][1][0], 1e-6, "previous-token L1H0");
        Assert.Equal("duplicate-token", s.Labels[1][0]);
        Near(1, s["induction"][1][1], 1e-6, "induction L1H1");
        Near(1, s["prefix_matching"][1][1], 1e-6, "prefix matching L1H1");
        Near(0, s["duplicate_token"][1][1], 1e-6, "duplicate L1H1");
        Assert.Equal("induction", s.Labels[1][1]);

        // the free head L0H1 against the mean of its pattern's diagonals, read from a cache of the same sequences
        var tokens = HeadProbe.RepeatedRandomTokens(20, 4, L, 5);
        for (int b = 0; b < 4; b++) Assert.Equal(L, tokens.Skip(b * 2 * L).Take(L).Distinct().Count()); // the first half has no repeats
        var pattern = m.RunWithCache(tokens, 4, 2 * L, n => n == "blocks.0.attn.hook_pattern")["blocks.0.attn.hook_pattern"].Span;
        double p = 0, d = 0, q = 0;
        const int T = 2 * L;
        for (int b = 0; b < 4; b++)
        {
            for (int i = 1; i < T; i++) p += pattern[((b * 2 + 1) * T + i) * T + i - 1];
            for (int i = L; i < T; i++) { d += pattern[((b * 2 + 1) * T + i) * T + i - L]; q += pattern[((b * 2 + 1) * T + i) * T + i - L + 1]; }
        }
        Near(p / (4 * (T - 1)), s["previous_token"][0][1], 1e-6, "previous-token L0H1");
        Near(d / (4 * L), s["duplicate_token"][0][1], 1e-6, "duplicate L0H1");
        Near(q / (4 * L), s["induction"][0][1], 1e-6, "induction L0H1");
        Near(s["induction"][0][1], s["prefix_matching"][0][1], 1e-9, "prefix matching = induction without repeats");
        Assert.Equal(Label(s["previous_token"][0][1], s["duplicate_token"][0][1], s["induction"][0][1]), s.Labels[0][1]);
        Assert.Equal("", Label(0.39, 0.1, 0.2));
        Assert.Equal("induction", Label(0.45, 0.0, 0.6));
        Assert.Equal(["induction", "previous-token"], HeadScoreSet.Default.Roles(Values(0.45, 0.0, 0.6)));
        Assert.Equal(["previous-token", "duplicate-token"], HeadScoreSet.Default.Roles(Values(0.5, 0.5, 0.1))); // ties keep registry order
        var json = System.Text.Json.JsonSerializer.Serialize(s);
        Assert.Contains("\"previous_token\"", json);
    }

    [Fact]
    public void CopyingScoreOfConstructedOvCircuits()
    {
        // V = d_model = d_head = 8, W_E = W_V = W_U = I, W_pos = 0, no LN: attending to token t writes e_t·W_O
        const int V = 8;
        var m = GptModel.Create(new ModelConfig { NLayers = 1, DModel = V, NHeads = 1, DHead = V, NCtx = 16, DVocab = V, AttnOnly = true, NormalizationType = null }, 4);
        var p = m.Params;
        SetIdentity(p["embed.W_E"], V, V); p["pos_embed.W_pos"].Span.Clear();
        SetIdentity(p["blocks.0.attn.W_V"], V, V); SetIdentity(p["unembed.W_U"], V, V);
        SetIdentity(p["blocks.0.attn.W_O"], V, V);
        Near(1, HeadScores.Compute(m, batch: 3)["copying"][0][0], 1e-9, "W_O = I copies");
        SetIdentity(p["blocks.0.attn.W_O"], V, V, scale: -1);
        Near(0, HeadScores.Compute(m, batch: 3)["copying"][0][0], 1e-9, "W_O = −I suppresses");
        // W_O = I + ½·shift: every token is still its own top logit
        SetIdentity(p["blocks.0.attn.W_O"], V, V);
        for (int t = 0; t < V; t++) p["blocks.0.attn.W_O"][t * V + (t + 1) % V] = 0.5f;
        Near(1, HeadScores.Compute(m, batch: 3)["copying"][0][0], 1e-9, "I + ½·shift copies");
        // tokens 0–3 map to the next token, 4–7 to themselves: the score is the attention on tokens 4–7
        SetIdentity(p["blocks.0.attn.W_O"], V, V);
        for (int t = 0; t < 4; t++) { p["blocks.0.attn.W_O"][t * V + t] = 0; p["blocks.0.attn.W_O"][t * V + t + 1] = 1; }
        var rng = new Rng(2);
        foreach (var name in new[] { "blocks.0.attn.W_Q", "blocks.0.attn.W_K" }) for (int i = 0; i < V * V; i++) p[name][i] = (float)rng.NextNormal();
        var tokens = HeadProbe.RepeatedRandomTokens(V, 3, 8, 1);
        var pattern = m.RunWithCache(tokens, 3, 16, n => n == "blocks.0.attn.hook_pattern")["blocks.0.attn.hook_pattern"].Span;
        double copied = 0;
        for (int b = 0; b < 3; b++)
            for (int i = 8; i < 16; i++) // queries of the repeated half
                for (int j = 0; j <= i; j++)
                    if (tokens[b * 16 + j] >= 4) copied += pattern[(b * 16 + i) * 16 + j];
        double score = HeadScores.Compute(m, batch: 3)["copying"][0][0];
        Near(copied / (3 * 8), score, 1e-6, "half copier");
        Assert.InRange(score, 0.05, 0.95);
    }

    [Fact]
    public void CopyingScoreOfALayerNormModelReadsTheCentredScaledStream()
    {
        // with hook_v and hook_pattern forced, an LN model's copying score must equal that of a model without LN
        // whose W_U is (I − 11ᵀ/D)·diag(ln_final.w)·W_U (LN's centring and gain), and differ from plain W_U
        const int V = 8, D = 8, T = 16;
        var rng = new Rng(31);
        var vForced = new float[3 * T * D];
        var patternForced = new float[3 * T * T];
        for (int i = 0; i < patternForced.Length; i++) { int q = i / T % T, k = i % T; patternForced[i] = k <= q ? (float)Math.Exp(2 * rng.NextNormal()) : 0; }
        for (int r = 0; r < 3 * T; r++) { float s = 0; for (int k = 0; k < T; k++) s += patternForced[r * T + k]; for (int k = 0; k < T; k++) patternForced[r * T + k] /= s; }
        var tokens = HeadProbe.RepeatedRandomTokens(V, 3, 8, 1);
        for (int n = 0; n < 3 * T; n++) { vForced[n * D + tokens[n]] = 1; for (int e = 0; e < D; e++) vForced[n * D + e] += (float)(0.3 * rng.NextNormal()); }
        var wo = new float[D * D]; var wu = new float[D * V]; var g = new float[D];
        for (int i = 0; i < D * D; i++) wo[i] = (i / D == i % D ? 1 : 0) + 3 + (float)(0.3 * rng.NextNormal()); // + 3: a large mean that LN removes
        for (int i = 0; i < D * V; i++) wu[i] = (i / V == i % V ? 1 : 0) + (float)(0.5 * rng.NextNormal());
        for (int d = 0; d < D; d++) g[d] = (float)(0.5 + rng.NextDouble());
        double Score(string? norm, float[] unembed)
        {
            var m = GptModel.Create(new ModelConfig { NLayers = 1, DModel = D, NHeads = 1, DHead = D, NCtx = T, DVocab = V, AttnOnly = true, NormalizationType = norm }, 6);
            wo.CopyTo(m.Params["blocks.0.attn.W_O"].Span); unembed.CopyTo(m.Params["unembed.W_U"].Span);
            if (norm == "LN") g.CopyTo(m.Params["ln_final.w"].Span);
            using var hv = m.Hooks.AddForward("blocks.0.attn.hook_v", (t, _) => vForced.CopyTo(t.Span));
            using var hp = m.Hooks.AddForward("blocks.0.attn.hook_pattern", (t, _) => patternForced.CopyTo(t.Span));
            return HeadScores.Compute(m, batch: 3)["copying"][0][0];
        }
        var folded = new float[D * V];
        for (int t = 0; t < V; t++)
        {
            double mean = 0;
            for (int d = 0; d < D; d++) mean += g[d] * wu[d * V + t] / D;
            for (int d = 0; d < D; d++) folded[d * V + t] = (float)(g[d] * wu[d * V + t] - mean);
        }
        double ln = Score("LN", wu);
        Near(Score(null, folded), ln, 1e-9, "LN model vs its folded unembedding");
        Assert.True(Math.Abs(Score(null, wu) - ln) > 0.05, $"ignoring LayerNorm should change the score ({Score(null, wu):G4} vs {ln:G4})");
    }

    [Fact]
    public void LossByPositionMatchesRowByRowLosses()
    {
        var m = Model(1, norm: "LN", attnOnly: false);
        const int B = 3, T = 12, V = 13;
        var batches = new List<EvalBatch> { new(Tokens(B * T, V, 1), Tokens(B * T, V, 2)), new(Tokens(B * T, V, 3), Tokens(B * T, V, 4)) };
        var curve = InContext.LossByPosition(m, batches);
        Assert.Equal(T, curve.Length);
        var direct = new double[T];
        foreach (var (x, y, _) in batches)
            for (int b = 0; b < B; b++)
            {
                m.Forward(x.AsSpan(b * T, T), y.AsSpan(b * T, T), 1, T);
                for (int t = 0; t < T; t++) direct[t] += m.Losses[t] / (2.0 * B);
            }
        for (int t = 0; t < T; t++) Near(direct[t], curve[t], 1e-6, $"position {t}");
        var half = InContext.LossByPosition(m, [new(batches[0].Inputs[..(B * 6)], batches[0].Targets[..(B * 6)])], seqLen: 6);
        Assert.Equal(6, half.Length);
        Assert.Throws<ArgumentException>(() => InContext.LossByPosition(m, [new(new int[7], new int[7])]));

        Assert.Equal(2.0 - 4.0, InContext.IclScore([5, 4, 3, 2], early: 1, late: 500)); // late clamps to the last position
        Assert.Equal(3.0 - 5.0, InContext.IclScore([5, 4, 3, 2], early: -3, late: 2));
        Assert.Equal(0.0, InContext.IclScore([5, 4, 3, 2]));                           // both clamp to position 3
    }

    public static TheoryData<int, string> PathModels() => new() { { 1, "standard" }, { 2, "standard" }, { 2, "shortformer" } };

    [Theory]
    [MemberData(nameof(PathModels))]
    public void PathTermsSumToTheLogits(int layers, string pos)
    {
        var m = Model(layers, pos: pos, heads: 3);
        const int B = 2, T = 12, V = 13, H = 3;
        var x = Tokens(B * T, V, 7);
        var terms = PathExpansion.Expand(m, x, B, T);
        int expected = 2 + layers * H + (layers == 2 ? H * H : 0);
        Assert.Equal(expected, terms.Names.Length);
        Assert.Equal(expected, terms.Logits.Length);
        Assert.Equal(["direct", "L0H0", "L0H1", "L0H2"], terms.Names[..4]);
        Assert.Equal("bias", terms.Names[^1]);
        if (layers == 2) Assert.Contains("L0H2->L1H1", terms.Names);
        m.Forward(x, default, B, T);
        var logits = m.Logits.ToArray();
        double maxTerm = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double s = 0;
            foreach (var t in terms.Logits) { s += t[i]; maxTerm = Math.Max(maxTerm, Math.Abs(t[i])); }
            Near(logits[i], s, 1e-4, $"logit {i}");
        }
        Assert.True(maxTerm > 0.1, "the terms are ~0, so the check proves nothing");
    }

    [Fact]
    public void SingleHeadTermIsTheHeadsResultThroughTheUnembedding()
    {
        var m = Model(1);
        m.Params["blocks.0.attn.b_V"].Span.Clear(); // b_V goes to the bias term; without it the head's term is its hook_result·W_U
        const int B = 2, T = 12, V = 13, D = 16;
        var x = Tokens(B * T, V, 8);
        var terms = PathExpansion.Expand(m, x, B, T);
        var result = m.RunWithCache(x, B, T, n => n == "blocks.0.attn.hook_result")["blocks.0.attn.hook_result"].Span; // [B,T,H,D]
        var wu = m.Params["unembed.W_U"].Span;
        var term = terms.Logits[Array.IndexOf(terms.Names, "L0H1")];
        for (int n = 0; n < B * T; n++)
            for (int t = 0; t < V; t++)
            {
                double s = 0;
                for (int d = 0; d < D; d++) s += result[(n * 2 + 1) * D + d] * wu[d * V + t];
                Near(s, term[n * V + t], 1e-5, $"L0H1 logit {n},{t}");
            }
    }

    [Fact]
    public void PathExpansionRejectsLayerNormAndMlps()
    {
        var x = Tokens(12, 13, 1);
        var e = Assert.Throws<ArgumentException>(() => PathExpansion.Expand(Model(1, norm: "LN"), x, 1, 12));
        Assert.Contains("LayerNorm", e.Message);
        Assert.Throws<ArgumentException>(() => PathExpansion.Expand(Model(1, attnOnly: false), x, 1, 12));
        Assert.Throws<ArgumentException>(() => PathExpansion.Expand(Model(3), x, 1, 12));
    }

    [Fact]
    public void TermImportanceIsZeroForAZeroTermAndTheAblationLossOtherwise()
    {
        const int B = 2, T = 12, V = 13, D = 16, dh = 8;
        var x = Tokens(B * T, V, 9); var y = Tokens(B * T, V, 10);
        // 2 layers, layer 0 head 1 writes nothing: its own term and its virtual heads are 0
        var m2 = Model(2);
        m2.Params["blocks.0.attn.W_O"].Span.Slice(dh * D, dh * D).Clear();
        var names = PathExpansion.Expand(m2, x, B, T).Names;
        var imp2 = PathExpansion.TermImportance(m2, x, y, B, T);
        Assert.Equal(names.Length, imp2.Length);
        foreach (var n in new[] { "L0H1", "L0H1->L1H0", "L0H1->L1H1" }) Assert.Equal(0.0, imp2[Array.IndexOf(names, n)]);
        Assert.True(Math.Abs(imp2[Array.IndexOf(names, "direct")]) > 1e-3);

        // 1 layer, b_V = 0: removing a head's term is zero-ablating its hook_result (the patterns do not change)
        var m1 = Model(1);
        m1.Params["blocks.0.attn.b_V"].Span.Clear();
        var names1 = PathExpansion.Expand(m1, x, B, T).Names;
        var imp1 = PathExpansion.TermImportance(m1, x, y, B, T);
        double Mean() { double s = 0; foreach (float l in m1.Losses) s += l; return s / (B * T); }
        m1.Forward(x, y, B, T);
        double clean = Mean();
        for (int h = 0; h < 2; h++)
        {
            int head = h;
            using (m1.Hooks.AddForward("blocks.0.attn.hook_result", (r, _) => { for (int n = 0; n < B * T; n++) r.Span.Slice((n * 2 + head) * D, D).Clear(); }))
                m1.Forward(x, y, B, T);
            Near(Mean() - clean, imp1[Array.IndexOf(names1, $"L0H{h}")], 1e-4, $"L0H{h}");
        }
    }

    [Fact]
    public void SkipTrigramsMatchTheFullTokenCircuits()
    {
        const int V = 10, D = 8, H = 2, dh = 4, k = 15;
        var m = Model(1, vocab: V, dModel: D, heads: H, dHead: dh);
        var p = m.Params;
        foreach (int head in new[] { 0, 1 })
        {
            double W(string n, int i) => p[$"blocks.0.attn.{n}"][head * D * dh + i];
            var qk = new double[V, V]; var ov = new double[V, V];
            for (int b = 0; b < V; b++)
                for (int a = 0; a < V; a++)
                {
                    double s = 0;
                    for (int e = 0; e < dh; e++)
                    {
                        double q = 0, kk = 0;
                        for (int d = 0; d < D; d++) { q += p["embed.W_E"][b * D + d] * W("W_Q", d * dh + e); kk += p["embed.W_E"][a * D + d] * W("W_K", d * dh + e); }
                        s += q * kk;
                    }
                    qk[b, a] = s / Math.Sqrt(dh);
                }
            for (int a = 0; a < V; a++)
            {
                for (int c = 0; c < V; c++)
                {
                    double s = 0;
                    for (int d1 = 0; d1 < D; d1++)
                        for (int e = 0; e < dh; e++)
                            for (int d2 = 0; d2 < D; d2++)
                                s += p["embed.W_E"][a * D + d1] * W("W_V", d1 * dh + e) * p["blocks.0.attn.W_O"][head * dh * D + e * D + d2] * p["unembed.W_U"][d2 * V + c];
                    ov[a, c] = s;
                }
                double mean = 0;
                for (int c = 0; c < V; c++) mean += ov[a, c] / V;
                for (int c = 0; c < V; c++) ov[a, c] -= mean;
            }
            var all = new List<(int A, int B, int C, double S)>();
            for (int b = 0; b < V; b++)
            {
                double z = 0;
                for (int a = 0; a < V; a++) z += Math.Exp(qk[b, a]);
                for (int a = 0; a < V; a++)
                    for (int c = 0; c < V; c++) all.Add((a, b, c, Math.Exp(qk[b, a]) / z * ov[a, c]));
            }
            var want = all.OrderByDescending(t => t.S).Take(k).ToList();
            var got = SkipTrigrams.Top(m, 0, head, k);
            Assert.Equal(k, got.Count);
            for (int i = 0; i < k; i++)
            {
                Assert.Equal((want[i].A, want[i].B, want[i].C), (got[i].Source, got[i].Destination, got[i].Output));
                Near(want[i].S, got[i].Score, 1e-5, $"trigram {i}");
            }
        }
        Assert.Equal(V * V * V, SkipTrigrams.Top(m, 0, 1, V * V * V).Count);
    }

    // a random bigram chain over V tokens
    private static int[] Corpus(int V, int n, ulong seed)
    {
        var rng = new Rng(seed);
        var next = new double[V, V];
        for (int a = 0; a < V; a++) for (int b = 0; b < V; b++) next[a, b] = Math.Exp(2 * rng.NextNormal());
        var x = new int[n];
        for (int i = 1; i < n; i++)
        {
            int a = x[i - 1];
            double s = 0;
            for (int b = 0; b < V; b++) s += next[a, b];
            double u = rng.NextDouble() * s;
            int c = 0;
            while (c < V - 1 && (u -= next[a, c]) > 0) c++;
            x[i] = c;
        }
        return x;
    }

    [Fact]
    public void BigramKlIsZeroForTheCorpusBigramModelAndMatchesTheForwardPass()
    {
        const int V = 6;
        var corpus = Corpus(V, 3000, 21);
        var counts = new double[V, V]; var row = new double[V];
        for (int i = 0; i + 1 < corpus.Length; i++) { counts[corpus[i], corpus[i + 1]]++; row[corpus[i]]++; }
        // d_model = d_vocab, W_E = I, W_pos = 0, W_U = log P_corpus (add-one): the direct path is the smoothed bigram table
        var m = GptModel.Create(new ModelConfig { NLayers = 0, DModel = V, NCtx = 8, DVocab = V, NormalizationType = null }, 1);
        SetIdentity(m.Params["embed.W_E"], V, V);
        m.Params["pos_embed.W_pos"].Span.Clear();
        for (int a = 0; a < V; a++) for (int b = 0; b < V; b++) m.Params["unembed.W_U"][a * V + b] = (float)Math.Log((counts[a, b] + 1) / (row[a] + V));
        double kl = BigramKl.KlToBigrams(m, corpus);
        Assert.True(Math.Abs(kl) < 1e-6, $"KL {kl:G4} should be 0 for the bigram model itself");
        for (int a = 0; a < V; a++) m.Params["unembed.W_U"][a * V + (a + 1) % V] += 1f; // each source's table off by e in one entry
        double perturbed = BigramKl.KlToBigrams(m, corpus);
        Assert.True(perturbed > 1e-2, $"a perturbed table must have KL > 0, got {perturbed:G4}");

        // a random zero-layer LayerNorm model: KL against probabilities from GptModel.Forward on each token at position 0
        var r = Model(0, norm: "LN", vocab: V, dModel: 8);
        var tokens = Enumerable.Range(0, V).ToArray();
        r.Forward(tokens, default, V, 1);
        double want = 0;
        for (int a = 0; a < V; a++)
        {
            if (row[a] == 0) continue;
            var l = r.Logits.Slice(a * V, V).ToArray();
            double lse = Math.Log(l.Sum(v => Math.Exp(v)));
            for (int b = 0; b < V; b++)
            {
                double pc = (counts[a, b] + 1) / (row[a] + V);
                want += row[a] / (corpus.Length - 1) * pc * (Math.Log(pc) - (l[b] - lse));
            }
        }
        Near(want, BigramKl.KlToBigrams(r, corpus), 1e-5, "KL of the LN model");
        Assert.Throws<ArgumentException>(() => BigramKl.KlToBigrams(Model(1), corpus));
    }

    [Fact]
    public void CosinesOfRandomRowsSpreadAsOneOverRootD()
    {
        const int n = 300, d = 64;
        var rng = new Rng(5);
        var z = new float[n * d];
        for (int i = 0; i < z.Length; i++) z[i] = (float)rng.NextNormal();
        var s = Geometry.Cosines(z, n, d, bins: 20);
        Near(1 / Math.Sqrt(d), s.ExpectedStd, 1e-12, "expected std");
        Assert.True(Math.Abs(s.Std - 0.125) < 0.125 * 0.05, $"std {s.Std:G4} should be ≈ 1/√64");
        Assert.True(Math.Abs(s.Mean) < 0.01, $"mean {s.Mean:G4} should be ≈ 0");
        Assert.Equal(20, s.Histogram.Length);
        Near(1, s.Histogram.Sum(), 1e-12, "histogram mass");

        // a small matrix with a zero row, against the cosines computed directly
        var w = new float[] { 1, 0, 0, 1, 1, 0, 0, 0, 0, -2, 1, 1, 3, -1, 2 }; // 5 rows × 3, row 2 is zero
        var t = Geometry.Cosines(w, 5, 3, bins: 4);
        var cos = new List<double>();
        for (int i = 0; i < 5; i++)
            for (int j = i + 1; j < 5; j++)
            {
                if (i == 2 || j == 2) continue;
                double dot = 0, ni = 0, nj = 0;
                for (int k = 0; k < 3; k++) { dot += w[i * 3 + k] * w[j * 3 + k]; ni += w[i * 3 + k] * w[i * 3 + k]; nj += w[j * 3 + k] * w[j * 3 + k]; }
                cos.Add(dot / Math.Sqrt(ni * nj));
            }
        double mean = cos.Average();
        Near(mean, t.Mean, 1e-6, "mean");
        Near(Math.Sqrt(cos.Sum(c => (c - mean) * (c - mean)) / cos.Count), t.Std, 1e-6, "std");
        Near(cos.Min(), t.HistMin, 1e-6, "min"); Near(cos.Max(), t.HistMax, 1e-6, "max");
        Near(cos.Count(c => c < t.HistMin + (t.HistMax - t.HistMin) / 4) / (double)cos.Count, t.Histogram[0], 1e-12, "first bin");

        var m = Model(1, vocab: 20);
        var e = Geometry.EmbeddingCosines(m);
        var direct = Geometry.Cosines(m.Params["embed.W_E"].Span, 20, 16);
        Assert.Equal(direct.Mean, e.Mean); Assert.Equal(direct.Std, e.Std); Assert.Equal(40, e.Histogram.Length);
    }

    // log det by Gaussian elimination with partial pivoting, in double (no symmetry used)
    private static double LogDetLu(double[,] a)
    {
        int n = a.GetLength(0);
        a = (double[,])a.Clone();
        double logDet = 0;
        for (int c = 0; c < n; c++)
        {
            int piv = c;
            for (int r = c + 1; r < n; r++) if (Math.Abs(a[r, c]) > Math.Abs(a[piv, c])) piv = r;
            if (piv != c) for (int k = 0; k < n; k++) (a[c, k], a[piv, k]) = (a[piv, k], a[c, k]);
            logDet += Math.Log(Math.Abs(a[c, c]));
            for (int r = c + 1; r < n; r++)
            {
                double f = a[r, c] / a[c, c];
                for (int k = c; k < n; k++) a[r, k] -= f * a[c, k];
            }
        }
        return logDet;
    }

    [Theory]
    [InlineData(12, 5)]
    [InlineData(5, 12)]
    public void CodingRateEqualsTheLogDetOfTheOtherGramMatrix(int n, int d)
    {
        const double eps = 0.5;
        var rng = new Rng((ulong)(n * 31 + d));
        var z = new float[n * d];
        for (int i = 0; i < z.Length; i++) z[i] = (float)rng.NextNormal();
        double c = d / (n * eps * eps);
        // the larger of the two forms: I_n + c·Z·Zᵀ when n > d (CodingRate uses d×d), I_d + c·ZᵀZ otherwise
        int m = Math.Max(n, d);
        var g = new double[m, m];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++)
            {
                double s = 0;
                if (n > d) for (int k = 0; k < d; k++) s += (double)z[i * d + k] * z[j * d + k];
                else for (int k = 0; k < n; k++) s += (double)z[k * d + i] * z[k * d + j];
                g[i, j] = c * s + (i == j ? 1 : 0);
            }
        Near(0.5 * LogDetLu(g), Geometry.CodingRate(z, n, d, eps), 1e-9, "coding rate");
    }

    [Fact]
    public void ResidualCodingRatesReadTheEmbeddingAndEachResidPost()
    {
        var m = Model(2, norm: "LN", attnOnly: false);
        const int B = 2, T = 12, V = 13, D = 16;
        var x = Tokens(B * T, V, 11);
        var rates = Geometry.ResidualCodingRates(m, x, B, T, eps: 0.5);
        Assert.Equal(3, rates.Length);
        var emb = new float[B * T * D];
        for (int n = 0; n < B * T; n++)
            for (int k = 0; k < D; k++) emb[n * D + k] = m.Params["embed.W_E"][x[n] * D + k] + m.Params["pos_embed.W_pos"][n % T * D + k];
        Near(Geometry.CodingRate(emb, B * T, D, 0.5), rates[0], 1e-6, "after the embedding");
        var post = m.RunWithCache(x, B, T, n => n == "blocks.1.hook_resid_post")["blocks.1.hook_resid_post"].Span;
        Near(Geometry.CodingRate(post, B * T, D, 0.5), rates[2], 1e-9, "after block 1");
        var unit = Geometry.ResidualCodingRates(m, x, B, T, eps: 0.5, normalizeRows: true);
        for (int n = 0; n < B * T; n++)
        {
            var r = emb.AsSpan(n * D, D);
            double norm = Math.Sqrt(System.Numerics.Tensors.TensorPrimitives.SumOfSquares(r));
            for (int k = 0; k < D; k++) r[k] = (float)(r[k] / norm);
        }
        Near(Geometry.CodingRate(emb, B * T, D, 0.5), unit[0], 1e-5, "unit rows");
    }
}
