using Apache.Arrow;
using Apache.Arrow.Ipc;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Store;

public class ArrowFileStoreTests
{
    private const long T0 = 1_800_000_000_000;

    private static async Task<(ArrowFileStore Store, MetricsPipeline Pipeline)> RunAsync(string directory, int windows, ArrowFileStoreOptions? options = null, FakeTimeProvider? time = null)
    {
        time ??= new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + (windows * 10_000L)));
        options ??= new ArrowFileStoreOptions();
        options.Directory = directory;
        var store = new ArrowFileStore(options, time);
        var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 2, TimeProvider = time, AllowedLateness = TimeSpan.Zero }, [store]);
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("test"))
        {
            for (int w = 0; w < windows; w++)
            {
                for (int s = 0; s < 10; s++)
                {
                    writer.Write("temperature_celsius", [new Label("sensor", "s" + s)], s + (w * 0.5), T0 + (w * 10_000L) + s);
                }
            }
        }

        await pipeline.StopAsync();
        return (store, pipeline);
    }

    private static List<RecordBatch> ReadAll(string file)
    {
        using FileStream stream = File.OpenRead(file);
        using var reader = new ArrowFileReader(stream);
        var batches = new List<RecordBatch>();
        int count = reader.RecordBatchCountAsync().AsTask().GetAwaiter().GetResult();
        for (int i = 0; i < count; i++)
        {
            batches.Add(reader.ReadRecordBatchAsync(i, CancellationToken.None).AsTask().GetAwaiter().GetResult());
        }

        return batches;
    }

    [Fact]
    public async Task Stop_PublishesCompleteFilesWithEveryWindow()
    {
        using var dir = new TempDirectory();

        (ArrowFileStore store, MetricsPipeline pipeline) = await RunAsync(dir.Path, windows: 3);
        await pipeline.DisposeAsync();

        string file = Assert.Single(store.PublishedFiles());
        Assert.Empty(Directory.GetFiles(dir.Path, "*" + ArrowFileStore.PartialExtension));
        List<RecordBatch> batches = ReadAll(file);
        List<WindowRow> rows = [.. batches.SelectMany(b => CollectingSink.Read(b, 0))];
        Assert.Equal(30, rows.Count);
        Assert.Equal(30, rows.Sum(r => r.Count));
        WindowRow row = rows.Single(r => r.WindowStartMs == T0 + 20_000 && r.Labels.GetValue("sensor") == "s3");
        Assert.Equal(4.0, row.Last);
        Assert.Equal("1", batches[0].Schema.Metadata["monitoring_stream.schema_version"]);
    }

    [Fact]
    public async Task SmallFileLimit_RotatesIntoSeveralValidFiles()
    {
        using var dir = new TempDirectory();

        (ArrowFileStore store, MetricsPipeline pipeline) = await RunAsync(dir.Path, windows: 6, new ArrowFileStoreOptions { MaxFileBytes = 1 });
        await pipeline.DisposeAsync();

        IReadOnlyList<string> files = store.PublishedFiles();
        Assert.True(files.Count >= 6, $"{files.Count} files");
        Assert.Equal(60, files.SelectMany(ReadAll).Sum(b => b.Length));
    }

    [Fact]
    public async Task Retention_TotalSizeLimit_DeletesOldestFiles()
    {
        using var dir = new TempDirectory();

        (ArrowFileStore store, MetricsPipeline pipeline) = await RunAsync(dir.Path, windows: 8, new ArrowFileStoreOptions { MaxFileBytes = 1, MaxTotalBytes = 20_000 });
        await pipeline.DisposeAsync();

        IReadOnlyList<string> files = store.PublishedFiles();
        Assert.True(store.FilesDeleted > 0);
        Assert.True(files.Sum(f => new FileInfo(f).Length) <= 20_000);
        Assert.Equal(store.FilesPublished, files.Count + store.FilesDeleted);
        Assert.True(store.FilesPublished >= 8);
    }

    [Fact]
    public async Task Retention_Age_DeletesFilesOlderThanRetention()
    {
        using var dir = new TempDirectory();
        // Named by the store's clock three days before the run's clock; the hand-copied file has only its mtime.
        string threeDaysEarlier = DateTimeOffset.FromUnixTimeMilliseconds(T0).AddDays(-3).UtcDateTime.ToString("yyyyMMdd'T'HHmmss'.'fff'Z'", System.Globalization.CultureInfo.InvariantCulture);
        string old = Path.Combine(dir.Path, "windows-" + threeDaysEarlier + "-1-000000" + ArrowFileStore.Extension);
        await File.WriteAllBytesAsync(old, [1, 2, 3]);
        string foreign = Path.Combine(dir.Path, "copied-by-hand" + ArrowFileStore.Extension);
        await File.WriteAllBytesAsync(foreign, [1, 2, 3]);
        File.SetLastWriteTimeUtc(foreign, DateTime.UtcNow.AddDays(-3));

        (ArrowFileStore store, MetricsPipeline pipeline) = await RunAsync(dir.Path, windows: 1, new ArrowFileStoreOptions { Retention = TimeSpan.FromDays(1) });
        await pipeline.DisposeAsync();

        Assert.False(File.Exists(old));
        Assert.False(File.Exists(foreign));
        Assert.Single(store.PublishedFiles());
    }

    [Fact]
    public async Task Options_TimeProvider_NamesFilesAndDrivesRotationByAge()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 3, series: 5);
        using var dir = new TempDirectory();
        var time = new FakeTimeProvider(new DateTimeOffset(2031, 3, 4, 5, 6, 7, 890, TimeSpan.Zero));
        await using var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path, MaxFileAge = TimeSpan.FromMinutes(1), TimeProvider = time });

        await store.WriteAsync(batches[0], CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(59));
        await store.WriteAsync(batches[1], CancellationToken.None);
        Assert.Equal(0, store.FilesPublished);
        time.Advance(TimeSpan.FromSeconds(1));
        await store.WriteAsync(batches[2], CancellationToken.None);

        string file = Assert.Single(store.PublishedFiles());
        Assert.StartsWith("windows-20310304T050607.890Z-", Path.GetFileName(file), StringComparison.Ordinal);
        Assert.Equal(3, ReadAll(file).Count);
    }

    [Fact]
    public void Constructor_NullOptionsOrClock_ThrowsArgumentNull()
    {
        using var dir = new TempDirectory();

        Assert.Throws<ArgumentNullException>(() => new ArrowFileStore(null!));
        Assert.Throws<ArgumentNullException>(() => new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path, TimeProvider = null! }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path, MaxFileAge = TimeSpan.Zero }));
    }

    [Fact]
    public async Task WriteAsync_ReturnsWithTheBatchInTheFileOnDisk()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 2, series: 5);
        using var dir = new TempDirectory();
        await using var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path });

        await store.WriteAsync(batches[0], CancellationToken.None);
        string partial = Assert.Single(Directory.GetFiles(dir.Path, "*" + ArrowFileStore.PartialExtension));

        // Another reader sees every acknowledged batch in the file being written, before any publication.
        Assert.Equal(new FileInfo(partial).Length, store.BytesWritten);
        Assert.Single(ArrowFileCheck.CompleteBatches(partial).Batches);

        await store.WriteAsync(batches[1], CancellationToken.None);

        Assert.Equal(new FileInfo(partial).Length, store.BytesWritten);
        Assert.Equal(2, ArrowFileCheck.CompleteBatches(partial).Batches.Count);
        Assert.Empty(store.PublishedFiles());
        Assert.Equal(2, store.BatchesWritten);
    }

    [Fact]
    public async Task Publish_FreesTheSpaceReservedPastTheEndOfTheFile()
    {
        // The store reserves each batch's blocks before appending it (fallocate, keeping the length); a published
        // file must not keep reserved blocks it never wrote, or every file would waste up to a batch's framing slack.
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 2, series: 2_000);
        using var dir = new TempDirectory();
        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path });
        await store.WriteAsync(batches[0], CancellationToken.None);
        string partial = Assert.Single(Directory.GetFiles(dir.Path, "*" + ArrowFileStore.PartialExtension));
        long length = new FileInfo(partial).Length;
        long reserved = AllocatedBytes(partial);
        Assert.True(reserved >= length + 8192, $"{reserved:N0} bytes allocated for a partial file of {length:N0}: nothing reserved past its end");

        await store.WriteAsync(batches[1], CancellationToken.None);
        await store.CompleteAsync(CancellationToken.None);
        await store.DisposeAsync();

        string published = Assert.Single(store.PublishedFiles());
        long publishedLength = new FileInfo(published).Length;
        long allocated = AllocatedBytes(published);
        Assert.True(allocated <= ((publishedLength + 4095) / 4096 * 4096) + 4096, $"{allocated:N0} bytes allocated for a published file of {publishedLength:N0}");
        Assert.Equal(2, ReadAll(published).Count);
    }

    /// <summary>The bytes of disk a file takes (its allocated blocks, <c>stat</c>'s %b × 512), reserved blocks past its end included.</summary>
    private static long AllocatedBytes(string path)
    {
        using var stat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%b", path]) { RedirectStandardOutput = true })!;
        string output = stat.StandardOutput.ReadToEnd();
        stat.WaitForExit();
        Assert.Equal(0, stat.ExitCode);
        return long.Parse(output.Trim(), System.Globalization.CultureInfo.InvariantCulture) * 512;
    }
}
