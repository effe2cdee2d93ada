using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Store;

/// <summary>The Arrow file store under failures: a full disk, a publication that fails; it reports, counts and recovers.</summary>
public class ArrowFileStoreFailureTests
{
    [Fact]
    public async Task WriteAsync_DiskFullOrDisposed_FailureComesBackInTheTaskNotThrownAtTheCall()
    {
        // A caller that starts the write and awaits it later (or hands the task on) must find the failure in the task,
        // as with any asynchronous write. Found by probe 7: the full disk threw from the call itself.
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 2, series: 200);
        using TmpfsMount disk = TmpfsMount.Create(2L << 20);
        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = Path.Combine(disk.Path, "windows") });
        await store.WriteAsync(batches[0], CancellationToken.None);
        Assert.True(TmpfsMount.Fill(Path.Combine(disk.Path, "filler")) > 0);

        Task full = StartWrite(store, batches[1]);
        Assert.True(full.IsFaulted, "the write neither failed nor was refused on a full disk");
        await Assert.ThrowsAsync<StoreDiskFullException>(() => full);

        await store.DisposeAsync();
        Task disposed = StartWrite(store, batches[1]);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => disposed);

        // Argument errors stay at the call.
        Assert.Throws<ArgumentNullException>(() => { _ = store.WriteAsync(null!, CancellationToken.None).AsTask(); });
    }

    /// <summary>Starts a write, failing the test if the call itself throws.</summary>
    private static Task StartWrite(ArrowFileStore store, WindowBatch batch)
    {
        try
        {
            return store.WriteAsync(batch, CancellationToken.None).AsTask();
        }
        catch (Exception e)
        {
            Assert.Fail($"WriteAsync threw at the call instead of returning a faulted task: {e}");
            throw;
        }
    }

    [Fact]
    public async Task WriteAsync_DiskFull_ClearErrorCountedAndStoreRecoversWhenSpaceReturns()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 5, series: 200);
        using TmpfsMount disk = TmpfsMount.Create(2L << 20);
        string folder = Path.Combine(disk.Path, "windows");
        string filler = Path.Combine(disk.Path, "filler");
        await using var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = folder });
        await store.WriteAsync(batches[0], CancellationToken.None);
        await store.WriteAsync(batches[1], CancellationToken.None);
        long acknowledgedBytes = store.BytesWritten;

        Assert.True(TmpfsMount.Fill(filler) > 0);
        StoreDiskFullException full = await Assert.ThrowsAsync<StoreDiskFullException>(() => store.WriteAsync(batches[2], CancellationToken.None).AsTask());

        Assert.Contains(folder, full.Message, StringComparison.Ordinal);
        Assert.Contains("disk", full.Message, StringComparison.Ordinal);
        Assert.Contains("full", full.Message, StringComparison.Ordinal);
        Assert.IsAssignableFrom<IOException>(full.InnerException);
        Assert.True(store.DiskFullErrors >= 1);
        Assert.Equal(store.DiskFullErrors, store.WriteErrors);
        Assert.Contains("full", store.LastError, StringComparison.Ordinal);
        Assert.Equal(2, store.BatchesWritten);
        Assert.Equal(acknowledgedBytes, store.BytesWritten);
        // The closed file with the two acknowledged batches: published at once when its footer fit in
        // the space the torn batch freed, else waiting for space.
        Assert.Equal(1, store.PendingRecoveries + store.PartialFilesRecovered);

        // Still full (the failed write's torn tail was cut off, so fill again): still a clear refusal.
        TmpfsMount.Fill(filler);
        await Assert.ThrowsAsync<StoreDiskFullException>(() => store.WriteAsync(batches[2], CancellationToken.None).AsTask());
        Assert.True(store.DiskFullErrors >= 2, $"{store.DiskFullErrors} full-disk errors");
        Assert.Equal(2, store.BatchesWritten);

        File.Delete(filler);
        await store.WriteAsync(batches[2], CancellationToken.None);
        await store.WriteAsync(batches[3], CancellationToken.None);

        Assert.Equal(0, store.PendingRecoveries);
        Assert.Equal(1, store.PartialFilesRecovered);
        Assert.Equal(2, store.BatchesRecovered);
        Assert.Equal(4, store.BatchesWritten);
        await store.CompleteAsync(CancellationToken.None);
        Assert.Empty(Directory.GetFiles(folder, "*" + ArrowFileStore.PartialExtension));
        IReadOnlyList<string> files = store.PublishedFiles();
        Assert.Equal(2, files.Count);
        Assert.All(files, f => Assert.Null(ArrowFileCheck.Problem(f)));
        // Exactly the acknowledged batches, each once.
        Assert.Equal(WindowBatchFactory.PointsBySeries(batches.Take(4).Select(b => b.RecordBatch)), WindowBatchFactory.PointsBySeries(ArrowFileStoreContractTests.ReadFolder(folder)));
        Assert.Equal(4, ArrowFileStoreContractTests.ReadFolder(folder).Count);
    }

    [Fact]
    public async Task WriteAsync_PublicationFails_WriteAcknowledgedLaterWritesUseNewFilesAndFileRecovered()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 3, series: 10);
        using var dir = new TempDirectory();
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(WindowBatchFactory.T0));
        // Every batch fills a file (rotation after each); the first file's final name is taken by a folder,
        // so renaming the file onto it fails.
        await using var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path, MaxFileBytes = 1, TimeProvider = time });
        string blocker = Path.Combine(dir.Path, $"windows-{time.GetUtcNow().UtcDateTime:yyyyMMdd'T'HHmmss'.'fff'Z'}-{Environment.ProcessId}-000000{ArrowFileStore.Extension}");
        Directory.CreateDirectory(blocker);

        await store.WriteAsync(batches[0], CancellationToken.None);

        Assert.Equal(1, store.BatchesWritten);
        Assert.Equal(2, store.WriteErrors); // the publication, and the recovery tried at once
        Assert.Equal(0, store.DiskFullErrors);
        Assert.NotNull(store.LastError);
        Assert.Equal(0, store.FilesPublished);
        Assert.Equal(1, store.PendingRecoveries);

        await store.WriteAsync(batches[1], CancellationToken.None);

        Assert.Equal(2, store.BatchesWritten);
        Assert.Equal(1, store.FilesPublished); // the second file, while the first still cannot be published
        Assert.Equal(1, store.PendingRecoveries);

        Directory.Delete(blocker);
        await store.WriteAsync(batches[2], CancellationToken.None);
        await store.CompleteAsync(CancellationToken.None);

        Assert.Equal(0, store.PendingRecoveries);
        Assert.Equal(1, store.PartialFilesRecovered);
        Assert.Equal(3, store.FilesPublished);
        Assert.Equal(3, store.PublishedFiles().Count);
        Assert.Empty(Directory.GetFiles(dir.Path, "*" + ArrowFileStore.PartialExtension));
        Assert.Equal(WindowBatchFactory.PointsBySeries(batches.Select(b => b.RecordBatch)), WindowBatchFactory.PointsBySeries(ArrowFileStoreContractTests.ReadFolder(dir.Path)));
    }
}
