using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests.Circuits;

/// <summary>
/// On constructed models: the current-token score and the suppression roles (forced patterns, OV circuits made to copy
/// or to suppress), mean-ablation against zero-ablation, the wording of a loss change, the loss-curve dip, and the
/// unembedding centring of models that are not LayerNorm-folded.
/// </summary>
public class SuppressionAndAblationTests
{
    private static GptModel Model(string? norm = null, string pos = "standard", ulong seed = 5) =>
        GptModel.Create(new ModelConfig
        {
            NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, NCtx = 16, DVocab = 24, AttnOnly = true, NormalizationType = norm,
            PositionalEmbeddingType = pos, InitRange = 0.5,
        }, seed);

    // head h's pattern [B,H,T,T] replaced by one-hot attention to target(i) ≤ i
    private static IDisposable Force(GptModel m, int head, Func<int, int> target) =>
        m.Hooks.AddForward("blocks.0.attn.hook_pattern", (t, p) =>
        {
            int T = p.SeqLen, H = m.Config.NHeads;
            var s = t.Span;
            for (int b = 0; b < p.Batch; b++)
                for (int i = 0; i < T; i++)
                {
                    var row = s.Slice(((b * H + head) * T + i) * T, T);
                    row.Clear();
                    row[target(i)] = 1;
                }
        });

    /// <summary>
    /// W_U = W_Eᵀ and W_O[h] = sign·W_V[h]ᵀ: the OV circuit's nonzero eigenvalues are those of sign·W_Vᵀ·(W_U·W_E)·W_V, and
    /// W_U·W_E (centred over the vocabulary or not) is positive semi-definite, so the eigenvalue score is sign·1.
    /// </summary>
    private static void SetOv(GptModel m, int head, float sign)
    {
        var c = m.Config;
        int D = c.DModel, dh = c.DHead, V = c.DVocab;
        var we = m.Params["embed.W_E"].Span; var wu = m.Params["unembed.W_U"].Span;
        for (int v = 0; v < V; v++)
            for (int d = 0; d < D; d++) wu[d * V + v] = we[v * D + d];
        var wv = m.Params["blocks.0.attn.W_V"].Span.Slice(head * D * dh, D * dh);  // [D, dh]
        var wo = m.Params["blocks.0.attn.W_O"].Span.Slice(head * dh * D, dh * D);  // [dh, D]
        for (int d = 0; d < D; d++)
            for (int e = 0; e < dh; e++) wo[e * D + d] = sign * wv[d * dh + e];
    }

    [Fact]
    public void CurrentTokenAndSuppressionRolesFollowThePatternAndTheOvCircuit()
    {
        var m = Model();
        SetOv(m, 0, -1); // head 0 suppresses what it attends to
        SetOv(m, 1, +1); // head 1 copies it
        using (Force(m, 0, i => i))
        using (Force(m, 1, i => i))
        {
            var s = HeadScores.Compute(m, batch: 4);
            Assert.Equal(1.0, s[CurrentTokenScore.Id][0][0], 1e-6);
            Assert.Equal(1.0, s[CurrentTokenScore.Id][0][1], 1e-6);
            Assert.Equal(0.0, s[PreviousTokenScore.Id][0][0], 1e-6);
            Assert.Equal(1.0, s[CurrentTokenSuppressionScore.Id][0][0], 1e-6);
            Assert.Equal(0.0, s[CurrentTokenSuppressionScore.Id][0][1]);      // a copying head does not suppress
            Assert.Equal(0.0, s[PreviousTokenSuppressionScore.Id][0][0], 1e-6); // nor does a head that attends to itself suppress the previous token
            Assert.Equal([CurrentTokenSuppressionScore.RoleName, CurrentTokenScore.RoleName], s.Roles(0, 0));
            Assert.Equal(CurrentTokenSuppressionScore.RoleName, s.Labels[0][0]);
            Assert.Equal([CurrentTokenScore.RoleName], s.Roles(0, 1));
            Assert.Equal([CurrentTokenSuppressionScore.RoleName], HeadScoreSet.Default.Specific(s.Roles(0, 0)));
            // the gate reads the OV eigenvalue score the report shows
            var wc = new WeightCircuits(LayerNormFolding.ForCircuits(m).Model);
            Assert.Equal(-1.0, wc.HeadSpectra(0, 0).First(x => x.Name == "ov").EigenvalueScore, 1e-6);
            Assert.Equal(+1.0, wc.HeadSpectra(0, 1).First(x => x.Name == "ov").EigenvalueScore, 1e-6);
            Assert.Equal(wc.HeadSpectra(0, 0).First(x => x.Name == "ov").EigenvalueScore, wc.OvEigenvalueScore(0, 0), 1e-9);
        }
        using (Force(m, 0, i => Math.Max(0, i - 1)))
        {
            var s = HeadScores.Compute(m, batch: 4);
            Assert.Equal(1.0, s[PreviousTokenSuppressionScore.Id][0][0], 1e-6);
            Assert.Equal(0.0, s[CurrentTokenScore.Id][0][0], 1e-6); // query 0 (which can only attend to itself) is left out
            Assert.Equal([PreviousTokenSuppressionScore.RoleName, PreviousTokenScore.RoleName], s.Roles(0, 0));
        }
    }

    [Fact]
    public void RefiningRolesLeadWhateverTheValues()
    {
        var set = HeadScoreSet.Default;
        Func<string, double> values(double cur, double sup, double ind) =>
            n => n switch { "current_token" => cur, "current_token_suppression" => sup, "induction" => ind, _ => double.NaN };
        Assert.Equal(["induction", "current-token suppression", "current-token"], set.Roles(values(0.6, 0.6, 0.9)));
        Assert.Equal(["current-token suppression", "current-token", "induction"], set.Roles(values(0.6, 0.6, 0.5)));
        Assert.Equal(["current-token"], set.Roles(values(0.6, 0, 0)));
    }

    [Fact]
    public void MeanAblatingAHeadWhoseZIsConstantChangesNothingWhileZeroAblatingDoes()
    {
        string dir = TestPaths.TempDir("mean-ablation");
        var m = Model(seed: 9);
        // head 0: W_V = 0 and b_V ≠ 0, so v = b_V at every position and z = Σ_j A[i, j]·b_V = b_V (each pattern row sums to 1)
        var c = m.Config;
        m.Params["blocks.0.attn.W_V"].Span.Slice(0, c.DModel * c.DHead).Clear();
        var bv = m.Params["blocks.0.attn.b_V"].Span.Slice(0, c.DHead);
        for (int e = 0; e < bv.Length; e++) bv[e] = 1.5f - 0.4f * e;
        string ckpt = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(ckpt, m, null);
        var loaded = Checkpoint.Load(ckpt);
        var data = EvalData.Open("induction", loaded, 8, 2);
        var (clean, heads) = HeadAblation.Run(loaded.Model, data);

        var constant = heads[0];
        Assert.True(constant.MeanMeasured);
        Assert.Equal(clean.Repeat, constant.MeanLosses!.Repeat, 1e-5);
        Assert.Equal(clean.Data, constant.MeanLosses.Data, 1e-5);
        Assert.True(Math.Abs(constant.Losses.Repeat - clean.Repeat) > 1e-3, $"zero-ablating a constant head that writes b_V·W_O must change the loss ({constant.Losses.Repeat} vs {clean.Repeat})");
        // the means are what the head writes: b_V for head 0 on both the probe and the data
        var means = HeadAblation.Means(loaded.Model, data);
        for (int e = 0; e < c.DHead; e++)
        {
            Assert.Equal(1.5f - 0.4f * e, means.Probe[0][e], 1e-5);
            Assert.Equal(1.5f - 0.4f * e, means.Data[0][e], 1e-5);
        }
        // a head whose z varies loses something under mean ablation too
        Assert.True(Math.Abs(heads[1].MeanLosses!.Repeat - clean.Repeat) > 1e-4);
        // and the group form gives the same as the one-head form
        Assert.Equal(constant.MeanLosses.Repeat, HeadAblation.Measure(loaded.Model, data, [(0, 0)], means).Repeat, 1e-9);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ALossChangeIsWordedByItsSign()
    {
        Assert.Equal("lowers the loss to 0.99× (6.571 → 6.506 nats)", LossChange.Describe("the loss", 6.571, 6.506));
        Assert.Equal("raises the loss 1.60× (0.329 → 0.526 nats)", LossChange.Describe("the loss", 0.329, 0.5264));
        Assert.Equal("leaves the loss unchanged (0.329 nats)", LossChange.Describe("the loss", 0.329, 0.329));
        Assert.Equal("1.004×", LossChange.Factor(1.004));
        Assert.Equal("0.996×", LossChange.Factor(0.996));
        Assert.Equal("1.01×", LossChange.Factor(1.01));
        Assert.Equal("16.0×", LossChange.Factor(16.01));
        Assert.Equal(LossChange.Size(2), LossChange.Size(0.5), 1e-12); // halving weighs as much as doubling
    }

    [Fact]
    public void ADipInTheLossCurveIsFoundAndNoiseIsNot()
    {
        // 32 positions with a deterministic wobble of ±0.15 nats
        var rng = new Rng(4);
        double Wobble() => 0.15 * (2 * rng.NextDouble() - 1);
        double[] u = new double[32], falling = new double[32], flat = new double[64];
        for (int t = 0; t < 32; t++)
        {
            u[t] = 1 + 3 * Math.Pow((t - 22) / 22.0, 2) + Wobble();  // falls to 1 at 22, rises to ≈ 1.5 at 31
            falling[t] = 1 + 3 * Math.Exp(-t / 6.0) + Wobble();       // only falls
        }
        // a text model at n_ctx 64 on 64 windows: flat within a wobble of ±0.35 nats, with one position 0.55 low
        for (int t = 0; t < 64; t++) flat[t] = 2 + 0.35 * (2 * rng.NextDouble() - 1);
        flat[7] = 1.45;
        int? dip = InContext.Dip(u, 3, 31);
        Assert.NotNull(dip);
        Assert.InRange(dip!.Value, 18, 26);
        Assert.Null(InContext.Dip(falling, 3, 31));
        Assert.Null(InContext.Dip(flat, 6, 63));
        Assert.Null(InContext.Dip([1, 2, 3, 4, 5, 6, 7, 8], 0, 7)); // rising all along: the early loss is the minimum
    }

    /// <summary>
    /// TransformerLens centres W_U over the vocabulary whatever fold_ln does; the OV eigenvalue scores of a model without
    /// LayerNorm and of a shortformer LayerNorm model must be those of the model with W_U centred, not of W_U as stored.
    /// </summary>
    [Theory]
    [InlineData(null, "standard")]
    [InlineData("LN", "shortformer")]
    public void TheUnembeddingIsCentredForModelsThatAreNotFolded(string? norm, string pos)
    {
        string dir = TestPaths.TempDir("center-unembed");
        var m = Model(norm, pos, seed: 21);
        var c = m.Config;
        // give every row of W_U a large mean over the vocabulary, which centring removes
        var wu = m.Params["unembed.W_U"].Span;
        for (int d = 0; d < c.DModel; d++)
            for (int v = 0; v < c.DVocab; v++) wu[d * c.DVocab + v] += 2f * (d % 3 - 1) + 0.5f;
        string ckpt = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(ckpt, m, null);
        var loaded = Checkpoint.Load(ckpt);
        var result = CircuitsAnalysis.Run(ckpt, loaded, EvalData.Open("induction", loaded, 8, 1), new CircuitsOptions { AblatedHeads = [] });
        Assert.False(result.LayerNormFolded);

        var centred = GptModel.Create(c, 1);
        loaded.Model.Params.Buffer.CopyTo(centred.Params.Buffer, 0);
        var cu = centred.Params["unembed.W_U"].Span;
        for (int d = 0; d < c.DModel; d++)
        {
            var row = cu.Slice(d * c.DVocab, c.DVocab);
            double mean = 0;
            foreach (float x in row) mean += x;
            mean /= c.DVocab;
            for (int v = 0; v < row.Length; v++) row[v] = (float)(row[v] - mean);
        }
        var asStored = new WeightCircuits(loaded.Model);
        var expected = new WeightCircuits(centred);
        for (int h = 0; h < c.NHeads; h++)
        {
            Assert.Equal(expected.OvCopyingScore(0, h), result.Heads[h].OvCopying, 1e-6);
            Assert.True(Math.Abs(asStored.OvCopyingScore(0, h) - expected.OvCopyingScore(0, h)) > 1e-3, "the premise: centring changes this head's score");
        }
        Directory.Delete(dir, true);
    }
}
