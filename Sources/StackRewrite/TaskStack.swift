#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The shared to-do list of a tree pass: a LIFO stack of tasks that workers both take
/// from and add to (a directory task adds its subdirectories).
///
/// LIFO makes the pass depth-first, which bounds the directories held open by pending
/// tasks to about the depth of the tree. The pass is over when no task is queued and
/// none is running. The first failure cancels everything.
final class TaskStack<Task: Sendable>: @unchecked Sendable {
    // Everything below is guarded by `lock`.
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var tasks: [Task] = []
    /// Queued plus running.
    private var outstanding = 0
    private var waiting = 0
    private var failure: (any Error)?

    init() {
        pthread_mutex_init(lock, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(lock)
        changed.deallocate()
        lock.deallocate()
    }

    func push(_ task: Task) {
        push(contentsOf: CollectionOfOne(task))
    }

    func push(contentsOf newTasks: some Collection<Task>) {
        guard !newTasks.isEmpty else { return }
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        if failure != nil { return }
        tasks.append(contentsOf: newTasks)
        outstanding += newTasks.count
        if waiting > 0 {
            if newTasks.count == 1 { pthread_cond_signal(changed) } else { pthread_cond_broadcast(changed) }
        }
    }

    /// The next task; nil when the pass is over or failed. Call `finished()` after
    /// handling a task.
    func pop() -> Task? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        while tasks.isEmpty && outstanding > 0 && failure == nil {
            waiting += 1
            pthread_cond_wait(changed, lock)
            waiting -= 1
        }
        if failure != nil || tasks.isEmpty { return nil }
        return tasks.removeLast()
    }

    func finished() {
        pthread_mutex_lock(lock)
        outstanding -= 1
        if outstanding == 0 { pthread_cond_broadcast(changed) }
        pthread_mutex_unlock(lock)
    }

    /// Records the first failure, drops queued tasks and wakes everyone.
    func fail(_ error: any Error) {
        pthread_mutex_lock(lock)
        if failure == nil { failure = error }
        let dropped = tasks
        tasks.removeAll()
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(lock)
        // Released outside the lock: dropping the last reference to a directory runs
        // its clean-up (system calls).
        _ = dropped
    }

    var firstFailure: (any Error)? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return failure
    }
}
