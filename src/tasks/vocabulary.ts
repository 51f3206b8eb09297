/** The small shared vocabulary of every generated task, so a tiny model sees few distinct words. */
export const NAMES = ["Tom", "Lily", "Ben", "Sue", "Max", "Anna", "Sam", "Mia"] as const;
export const OBJECTS = ["apples", "balls", "books", "cakes", "cars", "hats", "pens", "toys"] as const;
export const COLOURS = ["red", "blue", "green", "yellow", "pink", "black"] as const;
export const THINGS = ["cat", "dog", "ball", "hat", "box", "bird", "car", "cup"] as const;
export const WORDS = ["cat", "sun", "tree", "milk", "book", "red", "play", "happy"] as const;
