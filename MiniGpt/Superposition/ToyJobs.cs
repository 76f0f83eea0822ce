using System.Runtime.InteropServices;
using MiniGpt.Tensors;

namespace MiniGpt.Superposition;

/// <summary>One toy model to train: its shape, importances, sparsity and seed.</summary>
public readonly record struct ToyJob(int N, int M, float[] Importance, double Sparsity, ulong Seed);

/// <summary>
/// Trains many independent toy models across the worker pool, one task per model. Each model trains
/// serially from its own seed (<see cref="ToyTraining"/>), so which thread runs it, and how many threads
/// there are, cannot change a single bit of any result; only the wall time changes.
/// </summary>
public static unsafe class ToyJobs
{
    private sealed class Context(IReadOnlyList<ToyJob> jobs, ToyTrainOptions options, TrainedToy[] results, Action<int, int>? progress)
    {
        public readonly IReadOnlyList<ToyJob> Jobs = jobs;
        public readonly ToyTrainOptions Options = options;
        public readonly TrainedToy[] Results = results;
        public readonly Action<int, int>? Progress = progress;
        public int Done;
        public Exception? Error;
    }

    /// <param name="progress">called (done, total) after each model, from whichever worker finished it, one call at a time.</param>
    public static TrainedToy[] TrainAll(IReadOnlyList<ToyJob> jobs, ToyTrainOptions options, Action<int, int>? progress = null)
    {
        options.Validate();
        var results = new TrainedToy[jobs.Count];
        var ctx = new Context(jobs, options, results, progress);
        var handle = GCHandle.Alloc(ctx);
        try { WorkerPool.Current.Run(&Task, (void*)GCHandle.ToIntPtr(handle), jobs.Count); }
        finally { handle.Free(); }
        if (ctx.Error != null) throw ctx.Error;
        return results;
    }

    private static void Task(void* p, int t)
    {
        var ctx = (Context)GCHandle.FromIntPtr((IntPtr)p).Target!;
        try
        {
            var j = ctx.Jobs[t];
            ctx.Results[t] = ToyTraining.Train(j.N, j.M, j.Importance, j.Sparsity, ctx.Options, j.Seed);
        }
        catch (Exception e) { Interlocked.CompareExchange(ref ctx.Error, e, null); } // a worker thread must not throw: rethrown by TrainAll
        int done = Interlocked.Increment(ref ctx.Done);
        if (ctx.Progress != null) lock (ctx) ctx.Progress(done, ctx.Jobs.Count);
    }
}
