using Apache.Arrow;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Tests.Sinks;

/// <summary>
/// The behaviour every <see cref="IWindowSink"/> must have, run over each sink by a derived class (as
/// dotnet/runtime's <c>ChannelTestBase</c> runs one suite over every channel kind). A new sink derives,
/// creates a fresh sink in <see cref="CreateSinkAsync"/> and reads back what it holds in
/// <see cref="ReadCountsAsync"/>; realistic batches come from <see cref="WindowBatchFactory"/>.
/// </summary>
/// <remarks>
/// What a sink must do: a write returns only once the batch is held (durably, for a durable sink);
/// a cancelled write ends promptly, by throwing <see cref="OperationCanceledException"/> or by finishing;
/// <see cref="IWindowSink.CompleteAsync"/> after writes keeps them; disposing twice, and completing and
/// disposing at the same time, never throw; a null batch throws <see cref="ArgumentNullException"/>;
/// a write after completion or disposal throws <see cref="InvalidOperationException"/> unless the sink
/// documents otherwise (and overrides <see cref="AssertWriteAfterCloseAsync"/>).
/// </remarks>
public abstract class WindowSinkContractTests
{
    /// <summary>The longest any call of the contract may take before the test fails.</summary>
    protected static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private static readonly Lazy<Task<IReadOnlyList<WindowBatch>>> s_batches = new(() => WindowBatchFactory.CreateAsync(windows: 3, series: 20));

    /// <summary>Creates a new, empty sink of the kind under test.</summary>
    protected abstract ValueTask<IWindowSink> CreateSinkAsync();

    /// <summary>The points per series (key: metric followed by its labels, as <c>RecentWindowStore.KeyOf</c>) that <paramref name="sink"/> holds now, read back as a consumer would.</summary>
    /// <param name="sink">A sink made by <see cref="CreateSinkAsync"/>.</param>
    /// <param name="written">The batches the test wrote, for sinks that are read back by series.</param>
    protected abstract Task<IReadOnlyDictionary<string, long>> ReadCountsAsync(IWindowSink sink, IReadOnlyList<WindowBatch> written);

    /// <summary>
    /// Asserts what a write after <see cref="IWindowSink.CompleteAsync"/> or disposal does: by default it throws
    /// <see cref="InvalidOperationException"/> (or <see cref="ObjectDisposedException"/>, which is one). A sink
    /// that documents another behaviour overrides this with an assertion of that behaviour.
    /// </summary>
    protected virtual async Task AssertWriteAfterCloseAsync(IWindowSink sink, WindowBatch batch)
    {
        ArgumentNullException.ThrowIfNull(sink);
        await Assert.ThrowsAnyAsync<InvalidOperationException>(() => sink.WriteAsync(batch, CancellationToken.None).AsTask());
    }

    /// <summary>Three windows of twenty series each, built by a real pipeline; shared, never modified.</summary>
    protected static Task<IReadOnlyList<WindowBatch>> SampleBatchesAsync() => s_batches.Value;

    /// <summary>The points per series in <paramref name="batches"/>.</summary>
    protected static IReadOnlyDictionary<string, long> CountsOf(IEnumerable<WindowBatch> batches) => WindowBatchFactory.PointsBySeries(batches);

    /// <summary>The points per series in <paramref name="batches"/> (Arrow record batches of the window schema).</summary>
    protected static IReadOnlyDictionary<string, long> CountsOf(IEnumerable<RecordBatch> batches) => WindowBatchFactory.PointsBySeries(batches);

    [Fact]
    public async Task WriteAsync_Batches_EveryRowHeldOnceItReturns()
    {
        IReadOnlyList<WindowBatch> batches = await SampleBatchesAsync();
        IWindowSink sink = await CreateSinkAsync();
        try
        {
            foreach (WindowBatch batch in batches)
            {
                await sink.WriteAsync(batch, CancellationToken.None).AsTask().WaitAsync(Bound);
            }

            // No CompleteAsync yet: what was acknowledged must already be held.
            Assert.Equal(CountsOf(batches), await ReadCountsAsync(sink, batches));
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    [Fact]
    public async Task Pipeline_RealRun_EveryWindowWrittenOnceAndHeld()
    {
        // The pipeline lets each batch go once every sink is done with it: a sink that kept a batch
        // without retaining it would fail here, not in production.
        IWindowSink sink = await CreateSinkAsync();

        (IReadOnlyList<WindowBatch> batches, PipelineMetrics metrics) = await WindowBatchFactory.RunPipelineAsync(sink, windows: 4, series: 30)
            .WaitAsync(Bound);

        SinkMetrics written = Assert.Single(metrics.Sinks, s => s.Name == sink.Name);
        Assert.Equal(batches.Count, written.BatchesWritten);
        Assert.Equal(batches.Sum(b => b.Points), written.PointsWritten);
        Assert.Equal(0, written.Errors);
        Assert.Equal(0, written.BatchesFailed + written.BatchesAbandoned + written.BatchesDropped);
        Assert.Equal(CountsOf(batches), await ReadCountsAsync(sink, batches));
    }

    [Fact]
    public async Task CompleteAsync_AfterWrites_KeepsEveryRow()
    {
        IReadOnlyList<WindowBatch> batches = await SampleBatchesAsync();
        IWindowSink sink = await CreateSinkAsync();
        try
        {
            foreach (WindowBatch batch in batches)
            {
                await sink.WriteAsync(batch, CancellationToken.None);
            }

            await sink.CompleteAsync(CancellationToken.None).AsTask().WaitAsync(Bound);

            Assert.Equal(CountsOf(batches), await ReadCountsAsync(sink, batches));
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    [Fact]
    public async Task CompleteAsync_WithoutWrites_Succeeds()
    {
        IWindowSink sink = await CreateSinkAsync();
        await sink.CompleteAsync(CancellationToken.None).AsTask().WaitAsync(Bound);
        await sink.DisposeAsync().AsTask().WaitAsync(Bound);

        Assert.Empty(await ReadCountsAsync(sink, []));
    }

    [Fact]
    public async Task WriteAsync_CanceledToken_ThrowsCanceledOrWritesPromptly()
    {
        IReadOnlyList<WindowBatch> batches = await SampleBatchesAsync();
        IWindowSink sink = await CreateSinkAsync();
        try
        {
            using var cts = new CancellationTokenSource();
            await cts.CancelAsync();
            Task write = sink.WriteAsync(batches[0], cts.Token).AsTask();

            Exception? thrown = await Record.ExceptionAsync(() => write.WaitAsync(Bound));

            Assert.True(thrown is null or OperationCanceledException, $"a cancelled write threw {thrown}");
            IReadOnlyDictionary<string, long> held = await ReadCountsAsync(sink, [batches[0]]);
            if (thrown is null)
            {
                Assert.Equal(CountsOf(batches.Take(1)), held);
            }
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    [Fact]
    public async Task WriteAsync_CanceledWhileWriting_EndsWithinBound()
    {
        IReadOnlyList<WindowBatch> batches = await SampleBatchesAsync();
        IWindowSink sink = await CreateSinkAsync();
        try
        {
            using var cts = new CancellationTokenSource();
            Task write = sink.WriteAsync(batches[0], cts.Token).AsTask();
            await cts.CancelAsync();

            Exception? thrown = await Record.ExceptionAsync(() => write.WaitAsync(Bound));

            Assert.True(thrown is null or OperationCanceledException, $"a cancelled write threw {thrown}");
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    [Fact]
    public async Task DisposeAsync_Twice_DoesNotThrow()
    {
        IReadOnlyList<WindowBatch> batches = await SampleBatchesAsync();
        IWindowSink sink = await CreateSinkAsync();
        await sink.WriteAsync(batches[0], CancellationToken.None);

        await sink.DisposeAsync().AsTask().WaitAsync(Bound);
        await sink.DisposeAsync().AsTask().WaitAsync(Bound);
    }

    [Fact]
    public async Task CompleteAndDispose_Concurrently_DoNotThrow()
    {
        IReadOnlyList<WindowBatch> batches = await SampleBatchesAsync();
        for (int round = 0; round < 8; round++)
        {
            IWindowSink sink = await CreateSinkAsync();
            await sink.WriteAsync(batches[round % batches.Count], CancellationToken.None);
            using var start = new Barrier(2);

            Task complete = Task.Run(async () =>
            {
                start.SignalAndWait(Bound);
                await sink.CompleteAsync(CancellationToken.None);
            });
            Task dispose = Task.Run(async () =>
            {
                start.SignalAndWait(Bound);
                await sink.DisposeAsync();
            });

            await Task.WhenAll(complete, dispose).WaitAsync(Bound);
        }
    }

    [Fact]
    public async Task WriteAsync_AfterComplete_ThrowsInvalidOperation()
    {
        IReadOnlyList<WindowBatch> batches = await SampleBatchesAsync();
        IWindowSink sink = await CreateSinkAsync();
        try
        {
            await sink.CompleteAsync(CancellationToken.None);

            await AssertWriteAfterCloseAsync(sink, batches[0]);
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    [Fact]
    public async Task WriteAsync_AfterDispose_ThrowsInvalidOperation()
    {
        IReadOnlyList<WindowBatch> batches = await SampleBatchesAsync();
        IWindowSink sink = await CreateSinkAsync();
        await sink.DisposeAsync();

        await AssertWriteAfterCloseAsync(sink, batches[0]);
    }

    [Fact]
    public async Task WriteAsync_NullBatch_ThrowsArgumentNull()
    {
        IWindowSink sink = await CreateSinkAsync();
        try
        {
            await Assert.ThrowsAsync<ArgumentNullException>(() => sink.WriteAsync(null!, CancellationToken.None).AsTask());
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }
}
