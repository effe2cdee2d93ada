using System.Threading.Channels;
using Monitoring.Stream.Ingest;

namespace Monitoring.Stream.Tests.Ingest;

public class ShardBellTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    private static Channel<PointBatch> NewQueue(int capacity) =>
        Channel.CreateBounded<PointBatch>(new BoundedChannelOptions(capacity) { SingleReader = true });

    [Fact]
    public async Task WaitAsync_FullBatchesBelowTheLazyCount_StaysAsleepUntilTheCountIsReached()
    {
        Channel<PointBatch> queue = NewQueue(256);
        var bell = new ShardBell(queue.Reader, 256);
        ValueTask<bool> wait = bell.WaitAsync();

        for (int i = 0; i < ShardBell.LazyBatches - 1; i++)
        {
            Assert.True(queue.Writer.TryWrite(new PointBatch(1)));
            bell.Ring(urgent: false);
        }

        Assert.False(wait.IsCompleted);

        Assert.True(queue.Writer.TryWrite(new PointBatch(1)));
        bell.Ring(urgent: false);
        Assert.True(await wait.AsTask().WaitAsync(s_bound));
    }

    [Fact]
    public async Task WaitAsync_UrgentWrite_WakesAtOnce()
    {
        Channel<PointBatch> queue = NewQueue(256);
        var bell = new ShardBell(queue.Reader, 256);
        ValueTask<bool> wait = bell.WaitAsync();

        Assert.True(queue.Writer.TryWrite(new PointBatch(0) { Kind = BatchKind.Tick }));
        bell.Ring(urgent: true);

        Assert.True(await wait.AsTask().WaitAsync(s_bound));
    }

    [Fact]
    public async Task WaitAsync_UrgentWriteJustBeforeTheShardParks_DoesNotSleep()
    {
        // The writer rings while the shard is still draining (not parked): the shard must not then sleep on it.
        Channel<PointBatch> queue = NewQueue(256);
        var bell = new ShardBell(queue.Reader, 256);
        bell.BeforeDrain();
        Assert.True(queue.Writer.TryWrite(new PointBatch(0) { Kind = BatchKind.Tick }));
        bell.Ring(urgent: true);

        ValueTask<bool> wait = bell.WaitAsync();

        Assert.True(wait.IsCompleted);
        Assert.True(await wait);
    }

    [Fact]
    public async Task Nudge_ParkedShardWithLazyBatches_WakesIt()
    {
        Channel<PointBatch> queue = NewQueue(256);
        var bell = new ShardBell(queue.Reader, 256);
        ValueTask<bool> wait = bell.WaitAsync();
        Assert.True(queue.Writer.TryWrite(new PointBatch(1)));
        bell.Ring(urgent: false);
        Assert.False(wait.IsCompleted);

        bell.Nudge();

        Assert.True(await wait.AsTask().WaitAsync(s_bound));
    }

    [Fact]
    public async Task WaitAsync_SmallQueue_EveryFullBatchWakes()
    {
        Channel<PointBatch> queue = NewQueue(2);
        var bell = new ShardBell(queue.Reader, 2);
        ValueTask<bool> wait = bell.WaitAsync();

        Assert.True(queue.Writer.TryWrite(new PointBatch(1)));
        bell.Ring(urgent: false);

        Assert.True(await wait.AsTask().WaitAsync(s_bound));
    }
}
