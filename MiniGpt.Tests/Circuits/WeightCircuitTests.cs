using System.Numerics;
using MiniGpt.Circuits;
using MiniGpt.Layers;
using MiniGpt.Model;
using Xunit;

namespace MiniGpt.Tests.Circuits;

/// <summary>
/// The circuits code against direct computation: the linear algebra against identities it must satisfy
/// (A = QR, A = U·S·Vᵀ, trace = Σλ, det = Πλ), FactoredMatrix against the dense product, and every weight
/// circuit against the numbers the model itself computes in a forward pass (or the dense chain of
/// weight products), LayerNorm folding against the unfolded model's log-softmax.
/// </summary>
public class WeightCircuitTests
{
    // ================================================================ linear algebra

    private static Matrix Random(int rows, int cols, ulong seed)
    {
        var rng = new Rng(seed);
        return Matrix.RandomNormal(rows, cols, ref rng);
    }

    private static Matrix NaiveMatMul(Matrix a, Matrix b)
    {
        var c = new Matrix(a.Rows, b.Cols);
        for (int i = 0; i < a.Rows; i++)
            for (int j = 0; j < b.Cols; j++)
            {
                double s = 0;
                for (int k = 0; k < a.Cols; k++) s += a[i, k] * b[k, j];
                c[i, j] = s;
            }
        return c;
    }

    private static void AssertOrthonormalColumns(Matrix q, double tol)
    {
        var qtq = LinearAlgebra.MatMul(q.Transpose(), q);
        Assert.True(Matrix.MaxAbsDiff(qtq, Matrix.Identity(q.Cols)) < tol, $"QᵀQ ≠ I: {Matrix.MaxAbsDiff(qtq, Matrix.Identity(q.Cols)):G3}");
    }

    [Fact]
    public void MatMulAndTransposeMatchNaive()
    {
        var a = Random(5, 7, 1);
        var b = Random(7, 3, 2);
        Assert.True(Matrix.MaxAbsDiff(LinearAlgebra.MatMul(a, b), NaiveMatMul(a, b)) < 1e-12);
        Assert.True(Matrix.MaxAbsDiff(LinearAlgebra.MatMulTransB(a, b.Transpose()), NaiveMatMul(a, b)) < 1e-12);
        Assert.Equal(a[3, 6], a.Transpose()[6, 3]);
        var x = a.Row(2).ToArray();
        Assert.Equal(LinearAlgebra.MatMul(a, b).Row(2).ToArray(), LinearAlgebra.VecMat(x, b), (p, q) => Math.Abs(p - q) < 1e-12);
    }

    [Theory]
    [InlineData(9, 4)]
    [InlineData(4, 9)]
    [InlineData(6, 6)]
    public void QrReconstructsWithOrthonormalQAndTriangularR(int m, int n)
    {
        var a = Random(m, n, 3);
        var (q, r) = LinearAlgebra.Qr(a);
        int p = Math.Min(m, n);
        Assert.Equal((m, p), (q.Rows, q.Cols));
        Assert.Equal((p, n), (r.Rows, r.Cols));
        Assert.True(Matrix.MaxAbsDiff(LinearAlgebra.MatMul(q, r), a) < 1e-12);
        AssertOrthonormalColumns(q, 1e-12);
        for (int i = 0; i < p; i++)
            for (int j = 0; j < i; j++) Assert.Equal(0, r[i, j]);
    }

    [Fact]
    public void SymmetricEigenDiagonalises()
    {
        var b = Random(8, 8, 4);
        var a = LinearAlgebra.MatMul(b, b.Transpose());
        for (int i = 0; i < 8; i++) a[i, i] -= 3; // indefinite
        var (values, v) = LinearAlgebra.SymmetricEigen(a);
        AssertOrthonormalColumns(v, 1e-12);
        // A·V = V·Λ
        var av = LinearAlgebra.MatMul(a, v);
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++) Assert.Equal(av[i, j], v[i, j] * values[j], 1e-10);
        Assert.Equal(LinearAlgebra.Trace(a), values.Sum(), 1e-10);
        for (int i = 1; i < 8; i++) Assert.True(values[i - 1] >= values[i]);
        // a known spectrum: diag(5, −2, 1) rotated
        var (q, _) = LinearAlgebra.Qr(Random(3, 3, 5));
        var d = new Matrix(3, 3, [5, 0, 0, 0, -2, 0, 0, 0, 1]);
        var known = LinearAlgebra.MatMul(LinearAlgebra.MatMul(q, d), q.Transpose());
        Assert.Equal([5, 1, -2], LinearAlgebra.SymmetricEigen(known).Values, (x, y) => Math.Abs(x - y) < 1e-12);
    }

    [Theory]
    [InlineData(10, 4, 4)]
    [InlineData(4, 10, 4)]
    [InlineData(12, 7, 3)] // rank 3: four zero singular values
    public void SvdReconstructsWithOrthonormalFactors(int m, int n, int rank)
    {
        var a = LinearAlgebra.MatMul(Random(m, rank, 6), Random(rank, n, 7));
        var (u, s, vt) = LinearAlgebra.Svd(a);
        int k = Math.Min(m, n);
        Assert.Equal((m, k), (u.Rows, u.Cols));
        Assert.Equal((k, n), (vt.Rows, vt.Cols));
        AssertOrthonormalColumns(u, 1e-10);
        AssertOrthonormalColumns(vt.Transpose(), 1e-10);
        var us = u.Clone();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < k; j++) us[i, j] *= s[j];
        Assert.True(Matrix.MaxAbsDiff(LinearAlgebra.MatMul(us, vt), a) < 1e-10);
        for (int j = 1; j < k; j++) Assert.True(s[j - 1] >= s[j]);
        for (int j = rank; j < k; j++) Assert.True(s[j] < 1e-12 * s[0]);
        // the singular values are the square roots of the eigenvalues of AᵀA (or AAᵀ)
        var gram = m >= n ? LinearAlgebra.MatMul(a.Transpose(), a) : LinearAlgebra.MatMul(a, a.Transpose());
        var ev = LinearAlgebra.SymmetricEigen(gram).Values;
        for (int j = 0; j < rank; j++) Assert.Equal(Math.Sqrt(ev[j]), s[j], 1e-9);
    }

    [Fact]
    public void EigenvaluesOfARotationAreComplex()
    {
        double th = 0.7;
        var r = new Matrix(2, 2, [Math.Cos(th), -Math.Sin(th), Math.Sin(th), Math.Cos(th)]);
        var l = LinearAlgebra.Eigenvalues(r);
        Assert.Equal(2, l.Length);
        Assert.True(Complex.Abs(l[0] - Complex.FromPolarCoordinates(1, th)) < 1e-14);
        Assert.True(Complex.Abs(l[1] - Complex.FromPolarCoordinates(1, -th)) < 1e-14);
        // a 3-D rotation about an axis plus a scaling along it: e^{±iθ} and 2
        var q = LinearAlgebra.Qr(Random(3, 3, 8)).Q;
        var block = new Matrix(3, 3, [Math.Cos(th), -Math.Sin(th), 0, Math.Sin(th), Math.Cos(th), 0, 0, 0, 2]);
        var m = LinearAlgebra.MatMul(LinearAlgebra.MatMul(q, block), q.Transpose());
        var l3 = LinearAlgebra.Eigenvalues(m);
        Assert.True(Complex.Abs(l3[0] - 2) < 1e-12);
        Assert.True(Complex.Abs(l3[1] - Complex.FromPolarCoordinates(1, th)) < 1e-12);
        Assert.True(Complex.Abs(l3[2] - Complex.FromPolarCoordinates(1, -th)) < 1e-12);
    }

    [Fact]
    public void EigenvaluesOfKnownMatrices()
    {
        // upper triangular: the diagonal
        var t = new Matrix(4, 4, [4, 1, 2, 3, 0, -3, 5, 1, 0, 0, 2, 7, 0, 0, 0, 1]);
        Assert.Equal([4.0, -3, 2, 1], LinearAlgebra.Eigenvalues(t).Select(z => z.Real), (x, y) => Math.Abs(x - y) < 1e-12);
        // companion matrix of (x² + 1)(x − 2)(x + 3) = x⁴ + x³ − 5x² + x − 6: roots ±i, 2, −3
        var comp = new Matrix(4, 4, [-1, 5, -1, 6, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]);
        var l = LinearAlgebra.Eigenvalues(comp);
        Complex[] expected = [-3, 2, Complex.ImaginaryOne, -Complex.ImaginaryOne];
        for (int i = 0; i < 4; i++) Assert.True(Complex.Abs(l[i] - expected[i]) < 1e-10, $"{l[i]} vs {expected[i]}");
        // a cyclic permutation (the standard shift stalls on it; the exceptional shifts break the cycle):
        // the 6th roots of unity
        var perm = new Matrix(6, 6);
        for (int i = 0; i < 6; i++) perm[(i + 1) % 6, i] = 1;
        var roots = LinearAlgebra.Eigenvalues(perm);
        for (int k = 0; k < 6; k++)
        {
            var w = Complex.FromPolarCoordinates(1, 2 * Math.PI * k / 6);
            Assert.Contains(roots, z => Complex.Abs(z - w) < 1e-10);
        }
        // the zero matrix and a nilpotent one: all eigenvalues 0
        Assert.All(LinearAlgebra.Eigenvalues(new Matrix(5, 5)), z => Assert.Equal(Complex.Zero, z));
        var nil = new Matrix(4, 4, [0, 1, 2, 3, 0, 0, 4, 5, 0, 0, 0, 6, 0, 0, 0, 0]);
        Assert.All(LinearAlgebra.Eigenvalues(nil), z => Assert.True(Complex.Abs(z) < 1e-12));
    }

    [Theory]
    [InlineData(7, 11)]
    [InlineData(16, 12)]
    [InlineData(40, 13)]
    [InlineData(120, 15)]
    public void EigenvaluesSumToTraceAndMultiplyToDeterminant(int n, ulong seed)
    {
        var a = Random(n, n, seed);
        var l = LinearAlgebra.Eigenvalues(a);
        Assert.Equal(n, l.Length);
        Complex sum = 0, prod = 1, sumSq = 0;
        foreach (var z in l) { sum += z; prod *= z; sumSq += z * z; }
        Assert.Equal(LinearAlgebra.Trace(a), sum.Real, 1e-9);
        Assert.True(Math.Abs(sum.Imaginary) < 1e-9);
        double det = Determinant(a);
        Assert.True(Complex.Abs(prod - det) < 1e-9 * Math.Max(1, Math.Abs(det)), $"Πλ = {prod}, det = {det}");
        Assert.Equal(LinearAlgebra.Trace(LinearAlgebra.MatMul(a, a)), sumSq.Real, 8); // tr(A²) = Σλ²
        // complex eigenvalues of a real matrix come in conjugate pairs
        foreach (var z in l)
            if (Math.Abs(z.Imaginary) > 1e-9) Assert.Contains(l, w => Complex.Abs(w - Complex.Conjugate(z)) < 1e-9);
    }

    // det by Gaussian elimination with partial pivoting (an independent check of Πλ)
    private static double Determinant(Matrix a)
    {
        var m = a.Clone();
        int n = m.Rows;
        double det = 1;
        for (int k = 0; k < n; k++)
        {
            int piv = k;
            for (int i = k + 1; i < n; i++) if (Math.Abs(m[i, k]) > Math.Abs(m[piv, k])) piv = i;
            if (piv != k) { for (int j = 0; j < n; j++) (m[k, j], m[piv, j]) = (m[piv, j], m[k, j]); det = -det; }
            det *= m[k, k];
            for (int i = k + 1; i < n; i++)
            {
                double f = m[i, k] / m[k, k];
                for (int j = k; j < n; j++) m[i, j] -= f * m[k, j];
            }
        }
        return det;
    }

    [Fact]
    public void LogDetOfSpdMatchesEigenvalues()
    {
        var b = Random(9, 6, 14);
        var a = LinearAlgebra.MatMulTransB(b, b);
        for (int i = 0; i < 9; i++) a[i, i] += 0.5;
        double expected = 0;
        foreach (double v in LinearAlgebra.SymmetricEigen(a).Values) expected += Math.Log(v);
        Assert.Equal(expected, LinearAlgebra.LogDetSpd(a), 1e-10);
        Assert.Equal(Math.Log(2 * 3 * 5), LinearAlgebra.LogDetSpd(new Matrix(3, 3, [2, 0, 0, 0, 3, 0, 0, 0, 5])), 1e-12);
        Assert.Throws<ArgumentException>(() => LinearAlgebra.LogDetSpd(new Matrix(2, 2, [1, 2, 2, 1])));
    }

    // ================================================================ FactoredMatrix

    [Theory]
    [InlineData(9, 7, 3)]
    [InlineData(5, 12, 4)]
    [InlineData(4, 6, 8)] // inner dimension above both sides
    public void FactoredMatrixMatchesDenseProduct(int m, int n, int r)
    {
        var f = new FactoredMatrix(Random(m, r, 20), Random(r, n, 21));
        var dense = f.ToDense();
        Assert.Equal((m, n, Math.Min(Math.Min(m, n), r)), (f.Rows, f.Cols, f.RankBound));
        // SVD: same singular values as the dense SVD, and U·S·Vᵀ reconstructs the product
        var (u, s, vt) = f.Svd();
        var ds = LinearAlgebra.Svd(dense).S;
        int k = f.RankBound;
        Assert.Equal(k, s.Length);
        for (int j = 0; j < k; j++) Assert.Equal(ds[j], s[j], 1e-10);
        AssertOrthonormalColumns(u, 1e-10);
        AssertOrthonormalColumns(vt.Transpose(), 1e-10);
        var us = u.Clone();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < k; j++) us[i, j] *= s[j];
        Assert.True(Matrix.MaxAbsDiff(LinearAlgebra.MatMul(us, vt), dense) < 1e-10);
        // norm, rows, columns, entries, transpose
        Assert.Equal(dense.FrobeniusNorm(), f.FrobeniusNorm, 1e-10);
        for (int i = 0; i < m; i++) Assert.Equal(dense.Row(i).ToArray(), f.Row(i), (x, y) => Math.Abs(x - y) < 1e-12);
        var col = f.Column(n - 1);
        for (int i = 0; i < m; i++) Assert.Equal(dense[i, n - 1], col[i], 1e-12);
        Assert.Equal(dense[m - 1, 1], f[m - 1, 1], 1e-12);
        Assert.True(Matrix.MaxAbsDiff(f.Transpose().ToDense(), dense.Transpose()) < 1e-12);
        // composition with another factored matrix and with dense matrices
        var g = new FactoredMatrix(Random(n, 2, 22), Random(2, 5, 23));
        var fg = f.Multiply(g);
        Assert.Equal(Math.Min(r, 2), fg.InnerDim);
        Assert.True(Matrix.MaxAbsDiff(fg.ToDense(), LinearAlgebra.MatMul(dense, g.ToDense())) < 1e-10);
        var right = Random(n, 3, 24);
        Assert.True(Matrix.MaxAbsDiff(f.Multiply(right).ToDense(), LinearAlgebra.MatMul(dense, right)) < 1e-10);
        var left = Random(2, m, 25);
        Assert.True(Matrix.MaxAbsDiff(f.LeftMultiply(left).ToDense(), LinearAlgebra.MatMul(left, dense)) < 1e-10);
    }

    [Theory]
    [InlineData(8, 3)]
    [InlineData(5, 7)]
    public void FactoredEigenvaluesAreTheNonzeroEigenvaluesOfTheProduct(int m, int r)
    {
        var f = new FactoredMatrix(Random(m, r, 30), Random(r, m, 31));
        var dense = LinearAlgebra.Eigenvalues(f.ToDense());
        var fac = f.Eigenvalues();
        int k = Math.Min(m, r);
        Assert.Equal(k, fac.Length);
        for (int i = 0; i < k; i++) Assert.True(Complex.Abs(dense[i] - fac[i]) < 1e-9, $"{dense[i]} vs {fac[i]}");
        for (int i = k; i < m; i++) Assert.True(Complex.Abs(dense[i]) < 1e-9); // the rest of the dense spectrum is 0
        // the copying score over all m eigenvalues equals the one over the nonzero ones
        Assert.Equal(FactoredMatrix.EigenvalueScore(dense), f.CopyingScore(), 1e-9);
        // Re(Σλ) = tr(B·A)
        Assert.Equal(LinearAlgebra.Trace(f.ReverseProduct()) / fac.Sum(z => z.Magnitude), f.CopyingScore(), 1e-12);
    }

    [Fact]
    public void CopyingScoreOfKnownMatrices()
    {
        var id = new FactoredMatrix(Matrix.Identity(4), Matrix.Identity(4));
        Assert.Equal(1, id.CopyingScore(), 1e-14);
        Assert.Equal(-1, id.Scale(-2).CopyingScore(), 1e-14);
        var rot = new FactoredMatrix(new Matrix(2, 2, [0, -1, 1, 0]), Matrix.Identity(2)); // eigenvalues ±i
        Assert.Equal(0, rot.CopyingScore(), 1e-14);
    }

    // ================================================================ weight circuits against the model

    private static ModelConfig SmallConfig(int layers, bool attnOnly, string? norm, int heads = 3) => new()
    {
        NLayers = layers, DModel = 16, NHeads = heads, DHead = 5, DMlp = 20, NCtx = 7, DVocab = 13,
        AttnOnly = attnOnly, NormalizationType = norm, InitRange = 0.4,
    };

    /// <summary>
    /// The d_vocab-sized circuits read through the d_model × d_model Gram matrices (the path GPT-2 small takes) have the
    /// spectra of the factored products: singular values and eigenvalues within float round-off of the Gram products,
    /// for both kernel sets, on a model where the vocabulary outnumbers d_model (so the circuits are rank-deficient).
    /// </summary>
    [Theory]
    [InlineData("fast")]
    [InlineData("reference")]
    public void SpectraThroughGramMatricesEqualTheFactoredOnes(string kernels)
    {
        var c = SmallConfig(2, attnOnly: false, "LN") with { DVocab = 37 };
        var wc = new WeightCircuits(GptModel.Create(c, 9, Kernels.Named(kernels)));
        Assert.False(wc.ViaGrams); // small: HeadSpectra takes the direct way unless told
        for (int l = 0; l < c.NLayers; l++)
            for (int h = 0; h < c.NHeads; h++)
            {
                var direct = wc.HeadSpectra(l, h, viaGrams: false);
                var grams = wc.HeadSpectra(l, h, viaGrams: true);
                foreach (string name in new[] { "token_qk", "ov" })
                {
                    var a = direct.Single(x => x.Name == name);
                    var b = grams.Single(x => x.Name == name);
                    Assert.Equal((a.Rows, a.Cols, a.SingularValues.Length, a.Eigenvalues.Length), (b.Rows, b.Cols, b.SingularValues.Length, b.Eigenvalues.Length));
                    double s1 = a.SingularValues[0], l1 = a.Eigenvalues[0].Magnitude;
                    for (int i = 0; i < a.SingularValues.Length; i++)
                        Assert.True(Math.Abs(a.SingularValues[i] - b.SingularValues[i]) <= 1e-5 * s1, $"L{l}H{h} {name} σ{i}: {a.SingularValues[i]} vs {b.SingularValues[i]}");
                    for (int i = 0; i < a.Eigenvalues.Length; i++)
                        Assert.True((a.Eigenvalues[i] - b.Eigenvalues[i]).Magnitude <= 1e-5 * l1, $"L{l}H{h} {name} λ{i}: {a.Eigenvalues[i]} vs {b.Eigenvalues[i]}");
                    Assert.Equal(a.EigenvalueScore, b.EigenvalueScore, 5);
                }
                // the shared spectra are computed the same way on both paths
                Assert.Equal(direct.Single(x => x.Name == "W_QK").SingularValues, grams.Single(x => x.Name == "W_QK").SingularValues);
            }
    }

    private static void Fill(GptModel m, string name, ref Rng rng, double mean, double std)
    {
        var s = m.Params[name].Span;
        for (int i = 0; i < s.Length; i++) s[i] = (float)(mean + std * rng.NextNormal());
    }

    private static GptModel Copy(GptModel m)
    {
        var c = new GptModel(m.Config);
        m.Params.Buffer.CopyTo(c.Params.Buffer, 0);
        return c;
    }

    private static float[] Logits(GptModel m, int[] tokens, int b, int t)
    {
        m.Forward(tokens, ReadOnlySpan<int>.Empty, b, t);
        return m.Logits.ToArray();
    }

    [Fact]
    public void OvCircuitRowIsTheHeadsLogitContributionWhenItAttendsOnlyToThatToken()
    {
        // one layer, attention only, no LayerNorm, biases 0 (the circuit excludes them), W_pos 0
        var model = GptModel.Create(SmallConfig(1, attnOnly: true, norm: null), 40);
        model.Params["pos_embed.W_pos"].Span.Clear();
        var c = new WeightCircuits(model);
        int V = model.Config.DVocab, H = model.Config.NHeads, D = model.Config.DModel, dh = model.Config.DHead;
        for (int h = 0; h < H; h++)
        {
            var ov = c.OvCircuit(0, h);
            Assert.Equal((V, V, dh), (ov.Rows, ov.Cols, ov.InnerDim));
            // the model with only head h writing (the others' W_O zeroed), one token: the pattern is 1 on it
            var only = Copy(model);
            var wo = only.Params["blocks.0.attn.W_O"].Span;
            for (int g = 0; g < H; g++) if (g != h) wo.Slice(g * dh * D, dh * D).Clear();
            var direct = c.DirectPath();
            for (int t = 0; t < V; t++)
            {
                var logits = Logits(only, [t], 1, 1);
                var row = ov.Row(t);
                var directRow = direct.Row(t);
                for (int v = 0; v < V; v++) Assert.Equal(logits[v] - directRow[v], row[v], 1e-5);
                // and the dense chain: z = W_E[t]·W_V[h], out = z·W_O[h], logits = out·W_U
                var z = LinearAlgebra.VecMat(c.WE.Row(t), c.WV(0, h));
                var chain = LinearAlgebra.VecMat(LinearAlgebra.VecMat(z, c.WO(0, h)), c.WU);
                Assert.Equal(chain, row, (x, y) => Math.Abs(x - y) < 1e-12);
            }
        }
        // the direct path is the zero-layer logits W_E[t]·W_U (b_U = 0)
        var zero = GptModel.Create(SmallConfig(0, attnOnly: true, norm: null), 41);
        zero.Params["pos_embed.W_pos"].Span.Clear();
        var bigram = new WeightCircuits(zero).DirectPath();
        Assert.Equal(model.Config.DModel, bigram.InnerDim);
        for (int t = 0; t < V; t++)
            Assert.Equal(bigram.Row(t), Logits(zero, [t], 1, 1).Select(x => (double)x), (x, y) => Math.Abs(x - y) < 1e-5);
    }

    [Fact]
    public void TokenAndPositionalQkCircuitsAreTheModelsAttentionScoresTimesSqrtDHead()
    {
        var model = GptModel.Create(SmallConfig(1, attnOnly: true, norm: null), 42);
        var cfg = model.Config;
        int V = cfg.DVocab, H = cfg.NHeads, T = cfg.NCtx;
        double scale = 1 / Math.Sqrt(cfg.DHead);

        // tokens only (W_pos = 0): scores[h, 1, 0] for the sequence [j, i] is q(i)·k(j)/√d_head
        var tokOnly = Copy(model);
        tokOnly.KeepPatterns = true; // the scores are read from the cache after each pass
        tokOnly.Params["pos_embed.W_pos"].Span.Clear();
        var c = new WeightCircuits(tokOnly);
        Assert.Equal(scale, c.AttentionScale);
        for (int h = 0; h < H; h++)
        {
            var qk = c.TokenQkCircuit(0, h);
            Assert.Equal((V, V, cfg.DHead), (qk.Rows, qk.Cols, qk.InnerDim));
            for (int i = 0; i < V; i += 3)
                for (int j = 0; j < V; j += 2)
                {
                    tokOnly.Forward([j, i], ReadOnlySpan<int>.Empty, 1, 2);
                    var scores = tokOnly.Cache!.Acts["blocks.0.attn.hook_attn_scores"].Span;
                    Assert.Equal(scores[h * 4 + 1 * 2 + 0], qk[i, j] * scale, 1e-5);
                    // q·k from the rows of W_E directly
                    var q = LinearAlgebra.VecMat(c.WE.Row(i), c.WQ(0, h));
                    var k = LinearAlgebra.VecMat(c.WE.Row(j), c.WK(0, h));
                    Assert.Equal(LinearAlgebra.Dot(q, k), qk[i, j], 1e-12);
                }
        }

        // positions only (W_E = 0): scores[h, i, j] for j ≤ i is W_pos[i]·W_QK·W_pos[j]ᵀ/√d_head
        var posOnly = Copy(model);
        posOnly.KeepPatterns = true;
        posOnly.Params["embed.W_E"].Span.Clear();
        var cp = new WeightCircuits(posOnly);
        posOnly.Forward(new int[T], ReadOnlySpan<int>.Empty, 1, T);
        var s = posOnly.Cache!.Acts["blocks.0.attn.hook_attn_scores"].Span;
        for (int h = 0; h < H; h++)
        {
            var pos = cp.PositionalQkCircuit(0, h);
            Assert.Equal((T, T), (pos.Rows, pos.Cols));
            var dense = pos.ToDense();
            for (int i = 0; i < T; i++)
                for (int j = 0; j <= i; j++) Assert.Equal(s[(h * T + i) * T + j], dense[i, j] * scale, 1e-5);
        }
    }

    [Fact]
    public void OmegaIsTheQkFormWithBiasesInHomogeneousCoordinates()
    {
        var model = GptModel.Create(SmallConfig(1, attnOnly: true, norm: null), 43);
        var rng = new Rng(44);
        Fill(model, "blocks.0.attn.b_Q", ref rng, 0, 0.5);
        Fill(model, "blocks.0.attn.b_K", ref rng, 0, 0.5);
        var c = new WeightCircuits(model);
        int D = model.Config.DModel, T = 2;
        for (int h = 0; h < model.Config.NHeads; h++)
        {
            var omega = c.Omega(0, h);
            Assert.Equal((D + 1, D + 1), (omega.Rows, omega.Cols));
            Assert.True(omega.RankBound <= model.Config.DHead);
            var dense = omega.ToDense();
            // the blocks [[W_Q·W_Kᵀ, W_Q·b_Kᵀ], [b_Q·W_Kᵀ, b_Q·b_Kᵀ]]
            var wqk = c.QK(0, h).ToDense();
            var wqbk = LinearAlgebra.MatMul(c.WQ(0, h), new Matrix(model.Config.DHead, 1, c.BK(0, h)));
            var bqwk = LinearAlgebra.VecMat(c.BQ(0, h), c.WK(0, h).Transpose());
            for (int i = 0; i < D; i++)
            {
                for (int j = 0; j < D; j++) Assert.Equal(wqk[i, j], dense[i, j], 1e-12);
                Assert.Equal(wqbk[i, 0], dense[i, D], 1e-12);
                Assert.Equal(bqwk[i], dense[D, i], 1e-12);
            }
            Assert.Equal(LinearAlgebra.Dot(c.BQ(0, h), c.BK(0, h)), dense[D, D], 1e-12);
            // x̃·Ω·ỹᵀ = (x·W_Q + b_Q)·(y·W_K + b_K)ᵀ for random x, y
            for (int trial = 0; trial < 5; trial++)
            {
                var x = Random(1, D, 50 + (ulong)trial).Data;
                var y = Random(1, D, 60 + (ulong)trial).Data;
                var q = LinearAlgebra.VecMat(x, c.WQ(0, h));
                var k = LinearAlgebra.VecMat(y, c.WK(0, h));
                for (int e = 0; e < q.Length; e++) { q[e] += c.BQ(0, h)[e]; k[e] += c.BK(0, h)[e]; }
                double viaOmega = LinearAlgebra.Dot(LinearAlgebra.VecMat([.. x, 1.0], dense), [.. y, 1.0]);
                Assert.Equal(LinearAlgebra.Dot(q, k), viaOmega, 1e-10);
            }
            // and through the model: residual x_p = W_E[t_p] + W_pos[p], score[1, 0] = x̃₁·Ω·x̃₀ᵀ/√d_head
            int[] toks = [4, 9];
            model.KeepPatterns = true; // the scores are read from the cache
            model.Forward(toks, ReadOnlySpan<int>.Empty, 1, T);
            var s = model.Cache!.Acts["blocks.0.attn.hook_attn_scores"].Span;
            var x0 = new double[D + 1];
            var x1 = new double[D + 1];
            for (int d = 0; d < D; d++) { x0[d] = c.WE[toks[0], d] + c.WPos[0, d]; x1[d] = c.WE[toks[1], d] + c.WPos[1, d]; }
            x0[D] = x1[D] = 1;
            Assert.Equal(s[h * 4 + 2], LinearAlgebra.Dot(LinearAlgebra.VecMat(x1, dense), x0) * c.AttentionScale, 1e-5);
        }
    }

    [Fact]
    public void HeadSpectraAreConsistent()
    {
        var c = new WeightCircuits(GptModel.Create(SmallConfig(2, attnOnly: true, norm: null), 45));
        var spectra = c.HeadSpectra(1, 2);
        Assert.Equal(6, spectra.Count);
        foreach (var sp in spectra)
        {
            Assert.True(sp.SingularValues.Length <= c.Config.DHead);
            Assert.InRange(sp.EigenvalueScore, -1 - 1e-12, 1 + 1e-12);
        }
        var ov = c.OvCircuit(1, 2);
        Assert.Equal(FactoredMatrix.EigenvalueScore(LinearAlgebra.Eigenvalues(ov.ToDense())), c.OvCopyingScore(1, 2), 1e-9);
        Assert.Equal(c.OvCopyingScore(1, 2), c.OvCopyingScores()[1, 2]);
    }

    // ================================================================ composition

    [Fact]
    public void CompositionScoresMatchTheDenseFormula()
    {
        var model = GptModel.Create(SmallConfig(3, attnOnly: true, norm: null, heads: 2), 46);
        var c = new WeightCircuits(model);
        var scores = Composition.Compute(model, baselineSamples: 20, seed: 7);
        int L = 3, H = 2;
        Matrix Ov(int l, int h) => LinearAlgebra.MatMul(c.WV(l, h), c.WO(l, h));
        Matrix Qk(int l, int h) => LinearAlgebra.MatMul(c.WQ(l, h), c.WK(l, h).Transpose());
        static double Dense(Matrix a, Matrix b) => LinearAlgebra.MatMul(a, b).FrobeniusNorm() / (a.FrobeniusNorm() * b.FrobeniusNorm());
        foreach (var kind in new[] { CompositionKind.Q, CompositionKind.K, CompositionKind.V })
        {
            double b = scores.Baseline(kind);
            Assert.InRange(b, 0.01, 0.99);
            for (int l1 = 0; l1 < L; l1++)
                for (int h1 = 0; h1 < H; h1++)
                    for (int l2 = 0; l2 < L; l2++)
                        for (int h2 = 0; h2 < H; h2++)
                        {
                            double raw = scores.Raw(kind, l1, h1, l2, h2);
                            if (l1 >= l2) { Assert.Equal(0, raw); Assert.Equal(0, scores.BaselineSubtracted(kind, l1, h1, l2, h2)); continue; }
                            var right = kind switch { CompositionKind.Q => Qk(l2, h2), CompositionKind.K => Qk(l2, h2).Transpose(), _ => Ov(l2, h2) };
                            Assert.Equal(Dense(Ov(l1, h1), right), raw, 1e-10);
                            Assert.Equal(raw - b, scores.BaselineSubtracted(kind, l1, h1, l2, h2), 1e-14);
                            Assert.Equal(raw - b, scores.BaselineSubtractedTensor(kind)[l1, h1, l2, h2], 1e-14);
                        }
        }
        // the baseline is deterministic, and is the mean score of Gaussian factor pairs computed densely
        Assert.Equal(scores.Baseline(CompositionKind.K), Composition.Compute(model, 20, 7).Baseline(CompositionKind.K));
        var rng = new Rng(7);
        double sum = 0;
        for (int s = 0; s < 20; s++)
        {
            var l = LinearAlgebra.MatMul(Matrix.RandomNormal(16, 5, ref rng), Matrix.RandomNormal(5, 16, ref rng));
            var r = LinearAlgebra.MatMul(Matrix.RandomNormal(16, 5, ref rng), Matrix.RandomNormal(5, 16, ref rng));
            sum += Dense(l, r);
        }
        Assert.Equal(sum / 20, scores.Baseline(CompositionKind.Q), 1e-10);
        Assert.Equal(scores.Baseline(CompositionKind.Q), scores.Baseline(CompositionKind.V));
        // an untrained model's weights are Gaussian: its raw scores average near the baseline
        double mean = 0;
        int n = 0;
        for (int l1 = 0; l1 < L; l1++)
            for (int l2 = l1 + 1; l2 < L; l2++)
                for (int h1 = 0; h1 < H; h1++)
                    for (int h2 = 0; h2 < H; h2++) { mean += scores.Raw(CompositionKind.V, l1, h1, l2, h2); n++; }
        Assert.InRange(mean / n, 0.6 * scores.Baseline(CompositionKind.V), 1.4 * scores.Baseline(CompositionKind.V));
    }

    // ================================================================ LayerNorm folding

    public static TheoryData<bool, bool, string?> FoldConfigs() => new()
    {
        { false, true, "LN" },    // 2 layers with MLPs, centre everything
        { true, true, "LN" },     // attention only
        { false, false, "LN" },   // no unembedding centring: logits themselves equal
        { false, true, "LNPre" }, // already normalise-only: centring only
        { true, true, null },     // no LayerNorm: only the unembedding is centred
    };

    [Theory]
    [MemberData(nameof(FoldConfigs))]
    public void FoldingLayerNormLeavesLogSoftmaxUnchanged(bool attnOnly, bool centerUnembed, string? norm)
    {
        var model = GptModel.Create(SmallConfig(2, attnOnly, norm), 47);
        var rng = new Rng(48);
        foreach (var t in model.Params.Tensors)
        {
            string leaf = t.Name[(t.Name.LastIndexOf('.') + 1)..];
            if (leaf == "w") Fill(model, t.Name, ref rng, 1, 0.3);           // ln gains
            else if (!leaf.StartsWith("W_", StringComparison.Ordinal)) Fill(model, t.Name, ref rng, 0, 0.3); // ln biases, all biases
        }
        var folded = LayerNormFolding.FoldLayerNorm(model, centerWriting: true, centerUnembed: centerUnembed);
        Assert.Equal(model.Config.HasLayerNorm ? "LNPre" : null, folded.Config.NormalizationType);
        Assert.False(folded.Params.Contains("blocks.0.ln1.w"));

        int B = 3, T = model.Config.NCtx, V = model.Config.DVocab;
        var tokens = new int[B * T];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = rng.NextInt(V);
        var before = Logits(model, tokens, B, T);
        var after = Logits(folded, tokens, B, T);
        double maxDiff = 0;
        for (int n = 0; n < B * T; n++)
        {
            var a = LogSoftmax(before.AsSpan(n * V, V));
            var b = LogSoftmax(after.AsSpan(n * V, V));
            for (int v = 0; v < V; v++) maxDiff = Math.Max(maxDiff, Math.Abs(a[v] - b[v]));
            if (!centerUnembed)
                for (int v = 0; v < V; v++) Assert.Equal(before[n * V + v], after[n * V + v], 1e-4);
        }
        Assert.True(maxDiff < 1e-4, $"log-softmax differs by {maxDiff:G3}");

        // the folded weights have the centring properties
        var c = new WeightCircuits(folded);
        if (model.Config.HasLayerNorm)
        {
            Assert.True(RowMeans(c.WE).Max(Math.Abs) < 1e-6);          // writing: rows of W_E have mean 0 over d_model
            Assert.True(RowMeans(c.WO(1, 2)).Max(Math.Abs) < 1e-6);
            Assert.True(RowMeans(c.WQ(1, 0).Transpose()).Max(Math.Abs) < 1e-6); // reading: columns of W_Q have mean 0
        }
        if (centerUnembed) Assert.True(RowMeans(c.WU).Max(Math.Abs) < 1e-6); // rows of W_U have mean 0 over the vocabulary
    }

    [Fact]
    public void FoldingRefusesShortformerWithLayerNorm()
    {
        var model = GptModel.Create(SmallConfig(1, true, "LN") with { PositionalEmbeddingType = "shortformer" }, 49);
        Assert.Throws<NotSupportedException>(() => LayerNormFolding.FoldLayerNorm(model));
    }

    private static double[] RowMeans(Matrix m)
    {
        var r = new double[m.Rows];
        for (int i = 0; i < m.Rows; i++)
        {
            double s = 0;
            foreach (double v in m.Row(i)) s += v;
            r[i] = s / m.Cols;
        }
        return r;
    }

    private static double[] LogSoftmax(ReadOnlySpan<float> x)
    {
        double max = double.NegativeInfinity;
        foreach (float v in x) max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in x) sum += Math.Exp(v - max);
        double lse = max + Math.Log(sum);
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++) y[i] = x[i] - lse;
        return y;
    }
}
