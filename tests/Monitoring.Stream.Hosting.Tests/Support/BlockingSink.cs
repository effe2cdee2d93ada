using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Tests.Support;

/// <summary>A sink that holds every write until released: a stalled downstream system.</summary>
internal sealed class BlockingSink : IWindowSink
{
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _firstWriteStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string Name => "blocking";

    /// <summary>Completes when the first write has started (and is being held).</summary>
    public Task FirstWriteStarted => _firstWriteStarted.Task;

    /// <summary>Lets every held and later write through.</summary>
    public void Release() => _release.TrySetResult();

    public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        _firstWriteStarted.TrySetResult();
        await _release.Task.WaitAsync(cancellationToken);
    }

    public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
