using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Sinks;
using Monitoring.Stream.Tests.Store;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 8: <see cref="ArrowFileStore.WriteAsync"/> returns its failures in the task, never at the call (argument errors
/// excepted): after completion, after disposal, at a rotation onto a full disk, with a cancelled token. docs/operations.md: a failed write is counted and not
/// acknowledged, and the next write after the cause is gone succeeds.
/// </summary>
public class Probe8StoreBlackBoxTests
{
    /// <summary>Starts a write; a throw at the call fails the test.</summary>
    private static Task StartWrite(ArrowFileStore store, WindowBatch batch, CancellationToken token = default)
    {
        try
        {
            return store.WriteAsync(batch, token).AsTask();
        }
        catch (Exception e)
        {
            Assert.Fail($"WriteAsync threw at the call instead of returning a faulted task: {e}");
            throw;
        }
    }

    [Fact]
    public async Task WriteAsync_AfterCompleteAfterDisposeAndWithACancelledToken_NeverThrowsAtTheCall()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 2, series: 20);
        using var dir = new TempDirectory();
        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path });
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        Task early = StartWrite(store, batches[0], cancelled.Token);
        Exception? cancel = await Record.ExceptionAsync(() => early);
        Assert.True(cancel is null or OperationCanceledException, $"a cancelled write ended with {cancel}");
        long written = store.BatchesWritten;
        Assert.Equal(cancel is null ? 1 : 0, written);

        await StartWrite(store, batches[1]);
        await store.CompleteAsync(CancellationToken.None);
        Task afterComplete = StartWrite(store, batches[0]);
        await Assert.ThrowsAnyAsync<InvalidOperationException>(() => afterComplete);
        await store.DisposeAsync();
        Task afterDispose = StartWrite(store, batches[0]);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => afterDispose);
        Assert.Equal(written + 1, store.BatchesWritten);
    }

    [Fact]
    public async Task WriteAsync_RotationOntoAFullDisk_FailureInTheTaskAndAcknowledgedBatchesKept()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 4, series: 200);
        using TmpfsMount disk = TmpfsMount.Create(2L << 20);
        string folder = Path.Combine(disk.Path, "windows");
        string filler = Path.Combine(disk.Path, "filler");
        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = folder, MaxFileBytes = 1 }); // a new file per batch
        try
        {
            await StartWrite(store, batches[0]);
            await StartWrite(store, batches[1]);
            Assert.True(TmpfsMount.Fill(filler) > 0);
            for (int attempt = 0; attempt < 3; attempt++)
            {
                Task full = StartWrite(store, batches[2]);
                await Assert.ThrowsAsync<StoreDiskFullException>(() => full);
                TmpfsMount.Fill(filler);
            }

            Assert.Equal(2, store.BatchesWritten);
            Assert.True(store.DiskFullErrors >= 3, $"{store.DiskFullErrors} full-disk errors");
            File.Delete(filler);
            await StartWrite(store, batches[2]);
            await StartWrite(store, batches[3]);
            await store.CompleteAsync(CancellationToken.None);
            Assert.Equal(4, store.BatchesWritten);
            Assert.Equal(
                WindowBatchFactory.PointsBySeries(batches.Select(b => b.RecordBatch)),
                WindowBatchFactory.PointsBySeries(ArrowFileStoreContractTests.ReadFolder(folder)));
        }
        finally
        {
            await store.DisposeAsync();
        }
    }
}
