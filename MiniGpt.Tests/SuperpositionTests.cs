using MiniGpt.Superposition;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// Toy models of superposition (Elhage et al. 2022): the hand-written backward against finite differences,
/// the geometry measures on known configurations, determinism across thread counts, and the paper's headline
/// results reproduced by short trainings that can fail: dense features give m orthogonal features, sparse
/// n = 5, m = 2 gives a pentagon.
/// </summary>
public class SuperpositionTests
{
    [Fact]
    public void BackwardMatchesFiniteDifferencesOfTheLoss()
    {
        const int n = 6, m = 3, batch = 5;
        var model = new ToyModel(n, m, ToyModel.GeometricImportance(n, 0.8));
        var rng = new Rng(7);
        model.Initialize(ref rng);
        for (int i = 0; i < n; i++) model.B[i] = (float)(0.3 * rng.NextNormal());
        var x = new float[batch * n];
        SparseFeatures.Fill(x, 0.4, ref rng); // some zeros, to exercise the skipped terms
        var h = new float[batch * m];
        var pre = new float[batch * n];
        var o = new float[batch * n];
        model.Forward(x, h, pre, o, batch);
        var dW = new float[m * n];
        var db = new float[n];
        model.Backward(x, h, pre, o, dW, db, new float[m], new float[n], batch);
        Assert.Contains(pre, p => p < 0); // both sides of the ReLU
        Assert.Contains(pre, p => p > 0);

        // central differences of the loss, evaluated in double from the float forward's outputs
        double Loss() => model.Forward(x, h, pre, o, batch);
        void Check(float[] p, float[] grad, string name)
        {
            const float eps = 1e-3f;
            for (int i = 0; i < p.Length; i++)
            {
                float keep = p[i];
                p[i] = keep + eps; double up = Loss();
                p[i] = keep - eps; double down = Loss();
                p[i] = keep;
                double fd = (up - down) / (2 * eps);
                Assert.True(Math.Abs(fd - grad[i]) <= 2e-3 + 1e-2 * Math.Abs(fd), $"d{name}[{i}]: backward {grad[i]}, finite differences {fd}");
            }
        }
        Check(model.W, dW, "W");
        Check(model.B, db, "b");
        Assert.Contains(dW, g => Math.Abs(g) > 1e-2);
    }

    [Fact]
    public void SparseFeaturesAreZeroWithProbabilitySAndUniformOtherwise()
    {
        var rng = new Rng(3);
        var x = new float[200_000];
        SparseFeatures.Fill(x, 0.9, ref rng);
        int active = x.Count(v => v != 0);
        Assert.InRange(active / (double)x.Length, 0.098, 0.102);
        double mean = x.Where(v => v != 0).Average(v => (double)v);
        Assert.InRange(mean, 0.49, 0.51);
        Assert.All(x, v => Assert.InRange(v, 0f, 1f));
        Assert.Throws<ArgumentException>(() => SparseFeatures.Fill(x, 1.0, ref rng));
    }

    [Fact]
    public void GeometryOfAPentagonAndOfOrthogonalFeatures()
    {
        // five unit vectors 72° apart in the plane: each has dimensionality 1/(1 + 2cos²72° + 2cos²144°) = 2/5
        const int n = 5;
        var w = new float[2 * n];
        for (int i = 0; i < n; i++) { w[i] = MathF.Cos(2 * MathF.PI * i / n); w[n + i] = MathF.Sin(2 * MathF.PI * i / n); }
        var g = new FeatureGeometry(w, 2, n);
        Assert.Equal(5, g.Represented.Length);
        Assert.All(g.Dimensionality, d => Assert.Equal(0.4, d, 5));
        Assert.All(g.Superposition, s => Assert.Equal(1.5, s, 5));
        Assert.Equal(0.4, g.DimensionsPerFeature, 5);
        Assert.All(PlaneAngles.NeighbourGaps(PlaneAngles.Of(w, n), g.Represented), a => Assert.Equal(72, a, 3));
        var model = new ToyModel(n, 2, ToyModel.GeometricImportance(n, 1));
        w.CopyTo(model.W, 0);
        var orth = OrthogonalityStats.Of(model, g, 1)!;
        Assert.Equal(0.375, orth.MeanSqCos, 5);      // a tight frame meets the floor
        Assert.Equal(0.375, orth.TightFrameFloor, 10);
        Assert.InRange(orth.RandomMeanSqCos, 0.45, 0.55); // E[cos²] = 1/m for random directions

        // two orthogonal features and one dropped: dimensionality 1, 1, 0
        var w2 = new float[] { 1, 0, 0.01f, 0, 1, 0 };
        var g2 = new FeatureGeometry(w2, 2, 3);
        Assert.Equal(new[] { 0, 1 }, g2.Represented);
        Assert.Equal(1, g2.Dimensionality[0], 3);
        Assert.Equal(0, g2.Superposition[0], 3);
    }

    [Fact]
    public void TrainingIsIdenticalForAnyThreadCount()
    {
        var opt = new ToyTrainOptions { Steps = 200, BatchSize = 64, Restarts = 2 };
        var jobs = new[] { 0.0, 0.5, 0.9, 0.99 }.Select((s, i) => new ToyJob(8, 3, ToyModel.GeometricImportance(8, 0.9), s, (ulong)(40 + i))).ToList();
        float[][] Run(int threads)
        {
            using var pool = new WorkerPool(threads);
            WorkerPool.UseOnThisThread(pool);
            try { return ToyJobs.TrainAll(jobs, opt).Select(t => t.Model.W.Concat(t.Model.B).ToArray()).ToArray(); }
            finally { WorkerPool.UseOnThisThread(null); }
        }
        var one = Run(1);
        var two = Run(2);
        var three = Run(3);
        for (int j = 0; j < jobs.Count; j++)
        {
            Assert.Equal(one[j], two[j]);
            Assert.Equal(one[j], three[j]);
        }
        Assert.NotEqual(one[0], one[1]);
    }

    [Fact]
    public void DenseFeaturesGiveMOrthogonalFeaturesAndDropTheRest()
    {
        // S = 0, n = 20, m = 5: like PCA, the model keeps the m most important features, orthogonal, and drops the rest
        var t = ToyTraining.Train(20, 5, ToyModel.GeometricImportance(20, 0.9), 0, new ToyTrainOptions { Steps = 4000, Lr = 3e-3f }, 11);
        var g = FeatureGeometry.Of(t.Model);
        Assert.True(g.Represented.SequenceEqual([0, 1, 2, 3, 4]), "norms " + string.Join(" ", g.Norms.Select(v => v.ToString("0.00"))));
        for (int i = 0; i < 5; i++) Assert.InRange(g.Norms[i], 0.9, 1.1);
        for (int i = 5; i < 20; i++) Assert.True(g.Norms[i] < 0.25, $"‖W_{i}‖ = {g.Norms[i]:0.000}");
        for (int i = 0; i < 5; i++) Assert.InRange(g.Dimensionality[i], 0.95, 1.0001);
        var orth = OrthogonalityStats.Of(t.Model, g, 1)!;
        Assert.True(orth.MaxAbsCos < 0.05, $"max |cos| {orth.MaxAbsCos}");
        Assert.True(orth.RandomMeanAbsCos > 0.3, $"random baseline {orth.RandomMeanAbsCos}");
        Assert.InRange(g.DimensionsPerFeature, 0.9, 1.1);
    }

    [Fact]
    public void SparseFiveFeaturesInTwoDimensionsFormAPentagon()
    {
        var t = ToyTraining.Train(5, 2, ToyModel.GeometricImportance(5, 0.9), 0.95, new ToyTrainOptions { Restarts = 2 }, 5);
        var g = FeatureGeometry.Of(t.Model);
        Assert.Equal(5, g.Represented.Length);
        Assert.All(g.Norms, v => Assert.True(v > 0.5, $"norm {v}"));
        var gaps = PlaneAngles.NeighbourGaps(PlaneAngles.Of(t.Model.W, 5), g.Represented);
        Assert.All(gaps, a => Assert.InRange(a, 72 - 6, 72 + 6));
        Assert.All(g.Dimensionality, d => Assert.InRange(d, 0.4 - 0.03, 0.4 + 0.03));
        // the interference is filtered by negative biases
        Assert.All(t.Model.B, b => Assert.True(b < 0, $"b = {b}"));
    }

    [Fact]
    public void PhaseDiagramCornersMatchThePaper()
    {
        // dense: the more important feature takes the one dimension; sparse, equal importance: antipodal superposition
        var s = new[] { 0.0, 0.99 };
        var r = new[] { 0.2, 1.0, 5.0 };
        var cells = ToyJobs.TrainAll(PhaseDiagram.Jobs(s, r, 1), new ToyTrainOptions { Steps = 3000, Restarts = 3 });
        var pd = PhaseDiagram.From(s, r, cells);
        Assert.Equal(Phase.FirstOnly, pd[0, 0].Phase);
        Assert.Equal(Phase.SecondOnly, pd[0, 2].Phase);
        Assert.Equal(Phase.Superposition, pd[1, 1].Phase);
        Assert.True(pd[1, 1].W[0] * pd[1, 1].W[1] < 0);
        Assert.Equal(Phase.FirstOnly, PhaseTheory.Predict(0, 0.2));
        Assert.Equal(Phase.SecondOnly, PhaseTheory.Predict(0, 5));
        Assert.Equal(Phase.Superposition, PhaseTheory.Predict(0.99, 1));
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) Assert.Equal(PhaseTheory.Predict(s[i], r[j]), pd[i, j].Phase);
    }

    [Fact]
    public void OptionsRejectWhatCannotRun()
    {
        Assert.Contains("--m < --n", Assert.Throws<UserError>(() => new SuperpositionOptions { N = 5, M = 5 }.Validate()).Message);
        Assert.Contains("--m ≥ 1", Assert.Throws<UserError>(() => new SuperpositionOptions { M = 0 }.Validate()).Message);
        Assert.Contains("[0, 1)", Assert.Throws<UserError>(() => new SuperpositionOptions { Sparsities = [0.5, 1] }.Validate()).Message);
        Assert.Contains("--importance", Assert.Throws<UserError>(() => new SuperpositionOptions { Importance = 0 }.Validate()).Message);
        new SuperpositionOptions().Validate();
    }
}
