namespace Monitoring.Stream.Prometheus;

/// <summary>Completes once every request encoded from one window batch has been sent or dropped.</summary>
internal sealed class BatchDelivery
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // One count for the encoding itself, released when it has queued every request, so that a request finished
    // before the next is queued cannot complete the batch early.
    private int _remaining = 1;

    public Task Task => _done.Task;

    public void Add() => Interlocked.Increment(ref _remaining);

    public void Done()
    {
        if (Interlocked.Decrement(ref _remaining) == 0)
        {
            _done.TrySetResult();
        }
    }
}
