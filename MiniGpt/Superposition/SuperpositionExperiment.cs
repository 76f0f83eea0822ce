using System.Diagnostics;

namespace MiniGpt.Superposition;

/// <summary>
/// The experiments of Elhage et al. 2022 that the superposition verb runs:
///   the main sweep: n features into m dimensions, importance I_i = r^i, one model per sparsity (the paper's
///   figure: n = 20, m = 5, S ∈ {0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999});
///   the plane sweep: PlaneN features into m = 2 at the same sparsities, to draw W's columns as arrows
///   (n = 5 gives the pentagon once S ≳ 0.9); PlaneN = 0 skips it;
///   the phase diagram: n = 2, m = 1 over density × relative importance (<see cref="PhaseDiagram"/>);
///   PhaseGrid = 0 skips it.
/// The paper's n = 20, m = 5 figure uses I_i = 0.7^i; its notebook's n = 5, m = 2 models use 0.9^i, which
/// is the default here for both (one r for the two sweeps; --importance sets it).
/// </summary>
public sealed record SuperpositionOptions
{
    public int N { get; init; } = 20;
    public int M { get; init; } = 5;
    public double[] Sparsities { get; init; } = [0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999];
    public double Importance { get; init; } = 0.9;
    public int PlaneN { get; init; } = 5;
    public int PhaseGrid { get; init; } = 9;
    /// <summary>Restarts of each model of the plane sweep (cheap models, where a stalled run shows most: a half-grown third arrow at S = 0).</summary>
    public int PlaneRestarts { get; init; } = 2;
    /// <summary>Restarts of each phase-diagram cell (the best of them is kept; see <see cref="ToyTrainOptions.Restarts"/>).</summary>
    public int PhaseRestarts { get; init; } = 3;
    /// <summary>Training steps of each phase-diagram cell (two parameters and two biases learn faster than the sweeps' models).</summary>
    public int PhaseSteps { get; init; } = 3000;
    public ToyTrainOptions Train { get; init; } = new();
    public ulong Seed { get; init; } = 1;

    /// <summary>A UserError naming the first setting that cannot run.</summary>
    public void Validate()
    {
        if (M < 1) throw new UserError($"--m {M}: the hidden layer needs at least one dimension: use --m ≥ 1");
        if (N <= M) throw new UserError($"--n {N} --m {M}: superposition needs more features than dimensions: use --m < --n");
        if (N > 4096) throw new UserError($"--n {N}: at most 4096 features");
        if (Sparsities.Length == 0) throw new UserError("--sparsities is empty: give sparsities such as 0,0.9,0.99");
        foreach (double s in Sparsities)
            if (!(s >= 0 && s < 1)) throw new UserError($"--sparsities: {s} is not a sparsity in [0, 1) (S is the probability that a feature is 0; S = 1 would never show one)");
        if (!(Importance > 0 && Importance <= 1)) throw new UserError($"--importance {Importance}: the ratio r of I_i = r^i must be in (0, 1]");
        if (PlaneN != 0 && PlaneN < 3) throw new UserError($"--plane-n {PlaneN}: the m = 2 pictures need at least 3 features (0 skips them)");
        if (PlaneRestarts < 1 || PlaneRestarts > 16) throw new UserError($"--plane-restarts {PlaneRestarts}: use 1 … 16");
        if (PlaneN > 64) throw new UserError($"--plane-n {PlaneN}: at most 64 features in the plane");
        if (PhaseGrid != 0 && (PhaseGrid < 2 || PhaseGrid > 64)) throw new UserError($"--phase-grid {PhaseGrid}: use 2 … 64 points a side (0 skips the phase diagram)");
        if (PhaseRestarts < 1 || PhaseRestarts > 16) throw new UserError($"--phase-restarts {PhaseRestarts}: use 1 … 16");
        if (PhaseGrid != 0 && PhaseSteps < 1) throw new UserError($"--phase-steps {PhaseSteps}: use ≥ 1");
        try { Train.Validate(); }
        catch (UserError e) { throw new UserError("--" + e.Message.Replace("batch size", "batch-size")); }
    }

    /// <summary>A distinct seed for model number k of a run seeded with seed (SplitMix in Rng decorrelates neighbouring seeds).</summary>
    internal ulong SeedFor(int k) => SuperpositionExperiment.SeedFor(Seed, k);
}

/// <summary>One trained model of a sweep and what its W says.</summary>
public sealed record SparsityRun(double Sparsity, TrainedToy Trained, FeatureGeometry Geometry, OrthogonalityStats? Orthogonality,
    double[]? Angles, double[]? NeighbourGaps)
{
    public static SparsityRun Of(TrainedToy t, ulong seed)
    {
        var g = FeatureGeometry.Of(t.Model);
        double[]? angles = t.Model.M == 2 ? PlaneAngles.Of(t.Model.W, t.Model.N) : null;
        return new SparsityRun(t.Sparsity, t, g, OrthogonalityStats.Of(t.Model, g, seed), angles,
            angles != null ? PlaneAngles.NeighbourGaps(angles, g.Represented) : null);
    }
}

public sealed record SuperpositionResult(SuperpositionOptions Options, IReadOnlyList<SparsityRun> Main, IReadOnlyList<SparsityRun> Plane,
    PhaseDiagram? Phase, double Seconds, int Threads);

public static class SuperpositionExperiment
{
    public static ulong SeedFor(ulong seed, int k) => seed * 0x2545F4914F6CDD1DUL + (ulong)k * 0x9E3779B97F4A7C15UL;

    /// <param name="progress">(done, total) models, from the worker that finished one, one call at a time.</param>
    public static SuperpositionResult Run(SuperpositionOptions o, Action<int, int>? progress = null)
    {
        o.Validate();
        var clock = Stopwatch.StartNew();
        var mainImp = ToyModel.GeometricImportance(o.N, o.Importance);
        var jobs = new List<ToyJob>();
        for (int s = 0; s < o.Sparsities.Length; s++) jobs.Add(new ToyJob(o.N, o.M, mainImp, o.Sparsities[s], o.SeedFor(s)));
        int planeStart = jobs.Count;
        if (o.PlaneN > 0)
        {
            var planeImp = ToyModel.GeometricImportance(o.PlaneN, o.Importance);
            for (int s = 0; s < o.Sparsities.Length; s++) jobs.Add(new ToyJob(o.PlaneN, 2, planeImp, o.Sparsities[s], o.SeedFor(1_000_000 + s)));
        }
        // the sweeps and the phase cells differ in steps and restarts, so they are separate pool regions, the big models first
        int total = jobs.Count + PhaseCount(o);
        var mainJobs = jobs.GetRange(0, planeStart);
        var planeJobs = jobs.GetRange(planeStart, jobs.Count - planeStart);
        var trainedMain = ToyJobs.TrainAll(mainJobs, o.Train, progress == null ? null : (d, _) => progress(d, total));
        var trainedPlane = ToyJobs.TrainAll(planeJobs, o.Train with { Restarts = o.PlaneRestarts },
            progress == null ? null : (d, _) => progress(planeStart + d, total));
        var main = new List<SparsityRun>();
        var plane = new List<SparsityRun>();
        for (int i = 0; i < trainedMain.Length; i++) main.Add(SparsityRun.Of(trainedMain[i], o.SeedFor(3_000_000 + i)));
        for (int i = 0; i < trainedPlane.Length; i++) plane.Add(SparsityRun.Of(trainedPlane[i], o.SeedFor(3_000_000 + planeStart + i)));

        PhaseDiagram? phase = null;
        if (o.PhaseGrid > 0)
        {
            var (ss, rs) = PhaseDiagram.Axes(o.PhaseGrid);
            var cells = ToyJobs.TrainAll(PhaseDiagram.Jobs(ss, rs, o.Seed), o.Train with { Restarts = o.PhaseRestarts, Steps = o.PhaseSteps, CurvePoints = 1 },
                progress == null ? null : (d, _) => progress(jobs.Count + d, total));
            phase = PhaseDiagram.From(ss, rs, cells);
        }
        return new SuperpositionResult(o, main, plane, phase, clock.Elapsed.TotalSeconds, MiniGpt.Tensors.WorkerPool.Current.Threads);
    }

    private static int PhaseCount(SuperpositionOptions o) => o.PhaseGrid * o.PhaseGrid;
}
