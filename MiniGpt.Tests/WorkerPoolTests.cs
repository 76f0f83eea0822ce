using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

public class WorkerPoolTests
{
    private static unsafe void Count(void* ctx, int i) => Interlocked.Add(ref *(long*)ctx, i + 1);

    // A region started right after the constructor (before its threads first run), regions back to back, regions
    // after the workers have gone to sleep, and Dispose at any of those moments: every task runs exactly once and
    // nothing hangs. (A hand-rolled region counter once let a worker that started late sleep through the first
    // region and leave Run spinning forever; this test hung on it.)
    [Fact]
    public async Task EveryRegionRunsEveryTaskOnceWithoutHanging()
    {
        var work = Task.Run(RunRounds);
        var first = await Task.WhenAny(work, Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.True(first == work, "a parallel region never finished: a worker missed its wake-up");
        await work;
    }

    private static unsafe void RunRounds()
    {
        for (int round = 0; round < 300; round++)
        {
            using var pool = new WorkerPool(2 + round % 3);
            int regions = 1 + round % 4;
            for (int r = 0; r < regions; r++)
            {
                if (round % 50 == 49 && r == 1) Thread.Sleep(2); // let the workers stop spinning and block
                long sum = 0;
                int tasks = 1 + (round * 7 + r) % 40;
                pool.Run(&Count, &sum, tasks);
                Assert.Equal((long)tasks * (tasks + 1) / 2, sum);
            }
        }
    }
}
